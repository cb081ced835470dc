"""What the mesh client costs over raw aiokafka: round-trip latency and publish throughput.

Run with ``make bench-mesh`` or ``.venv/bin/python -m bench.mesh_vs_raw [--rate 200
--duration 10 ...]`` (``--help`` lists the flags). It starts the local broker if needed
(``localstack/kafka/kafka.sh start``), creates uniquely named topics for this run
(``bench<hex>.*``) and deletes them at the end, and always stops the responder processes it
spawned (EOF on their stdin, then SIGTERM, then SIGKILL after 10 s).

Measured in one run, on the same broker with the same client settings:

(a) request/reply between two processes. Raw: a ``bench.raw_echo`` responder (aiokafka
    consumer group on a request topic, each reply produced to the partition named in a
    header) and, in this process, an AIOKafkaProducer plus an AIOKafkaConsumer assigned to
    one reply partition, replies matched by a correlation id header. Mesh: a
    ``bench.mesh_echo`` responder (``ServiceWorker`` for an echo ``Service``) and, here, a
    ``MeshClient`` (reply partition self-assigned), both signed as in production (fresh
    Ed25519 keys, key ring and access map for the run; ``--insecure`` turns signing off to
    show its share). Same layout on both sides: a request topic with ``--partitions``
    partitions, a reply topic each. Load is open-loop: requests are issued on a fixed
    schedule (``--rate`` per second), each in its own task whether or not earlier ones were
    answered, so a side that cannot keep up queues (and shows it) instead of quietly
    sending less. Latency runs from issuing a request to its reply; how late the scheduler
    issued requests is printed separately ("schedule lag").
(b) publish throughput: ``--messages`` events of ``--size`` bytes (the same JSON value on
    both sides), ``--window`` sends in flight at a time (gathered), each awaiting its ack
    (``MeshClient.publish`` awaits ``send_and_wait``, so the raw side does too).

Both sides stay up for the whole run and take turns, in ``--rounds`` ABBA rounds (raw,
mesh, mesh, raw...), so that a slow spell of this shared 2-core machine (the broker, other
work) falls on both sides alike; only one side is loaded at a time.

Responders. Both commit offsets only after their replies were acknowledged (at-least-once),
and both commit in the background without holding back the next fetch
(``bus.delivery.pipeline``: the lowest offset still unanswered per partition; the raw
responder the same offsets from a background task). On this broker (Kafka 4.1,
``group.coordinator.append.linger.ms=5``) an OffsetCommit takes ~6 ms, longer than the 5 ms
between requests at 200 req/s, which is why neither waits for it; ``--raw-commit sync`` makes
the raw responder wait for each commit, to see what that choice would cost.

Client settings (printed with the results; both sides take them from one ``BusSettings``):

- ``linger_ms=0``: a request is one record, and any linger is paid in full twice per round
  trip (request and reply). Throughput does not need it: while a produce request is in
  flight, aiokafka batches the records queued behind it, so under concurrent sends batches
  form without a timer.
- ``fetch_min_bytes=1`` (aiokafka's default; ``KafkaTransport`` does not expose it, so the
  raw side keeps it too): the broker answers a pending fetch as soon as one record is
  there. Anything larger makes a lone request wait up to ``fetch_max_wait_ms`` on each of
  the two fetches of its round trip.
- ``fetch_max_wait_ms=100`` (``BusSettings`` defaults to 10, aiokafka to 500): with
  ``fetch_min_bytes=1`` a record arriving completes a waiting fetch at once, so this only
  bounds how long the broker holds an EMPTY fetch, i.e. how often an idle consumer polls.
  Measured here: p50 the same within noise for 10, 100 and 500 (raw 2.1-2.8 ms); an idle
  consumer costs 5.5% of a core at 10, 0.75% at 100, 0.3% at 500 (plus the broker's side
  of every empty fetch), and this run keeps four consumers alive on two cores. 100 keeps
  idle polling cheap while still bounding how long a consumer's in-flight empty fetch can
  hold back a seek or an assignment change. ``--fetch-max-wait-ms`` to compare.
- Fixed by ``KafkaTransport`` and mirrored on the raw side: ``acks=all``, idempotent
  producer, ``isolation_level=read_committed``, no auto-commit.

Targets: the mesh adds under 0.5 ms to p50, and publishes at least 70% of the raw rate.
The output ends with one JSON line (also written to ``bench/results/mesh_vs_raw.json``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from bench import stats
from bench.machine import describe
from bench.mesh_echo import (
    echo_operation,
    identity_settings,
    mesh_client,
    provision_identities,
)
from bench.raw_echo import FETCH_MIN_BYTES, RawCaller
from bus.config import BusSettings
from bus.errors import DeadlineExceeded
from bus.topics import request_topic
from infra.kafka.connect import door_kwargs
from proof.procs import ROOT, spawn

RESULTS = ROOT / "bench" / "results" / "mesh_vs_raw.json"
BROKER_START_TIMEOUT_S = 300.0
ADMIN_TIMEOUT_S = 30.0
TOPIC_READY_TIMEOUT_S = 15.0
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 20.0
PUBLISH_WINDOW_TIMEOUT_S = 60.0
PUBLISH_WARMUP = 1000
LOCAL_HOSTS = ("127.0.0.1",)


@dataclass(frozen=True)
class Names:
    """This run's topics and groups, unique so that runs never share state."""

    tag: str

    @classmethod
    def fresh(cls) -> Names:
        return cls(f"bench{uuid.uuid4().hex[:10]}")

    @property
    def mesh_service(self) -> str:
        return f"{self.tag}echo"

    @property
    def raw_requests(self) -> str:
        return f"{self.tag}.raw.requests"

    @property
    def mesh_caller(self) -> str:
        return f"{self.tag}caller"

    @property
    def mesh_requests(self) -> str:
        return request_topic(self.mesh_service)

    def topic(self, side: str, kind: str) -> str:
        """``raw``/``mesh`` x ``replies``/``events`` (requests: see the properties)."""
        return f"{self.tag}.{side}.{kind}"

    def topics(self) -> list[str]:
        return [self.raw_requests, self.mesh_requests] + [
            self.topic(side, kind) for side in ("raw", "mesh") for kind in ("replies", "events")
        ]

    def produce(self) -> dict[str, list[str]]:
        """The mesh side's access map: who may produce where."""
        return {
            self.mesh_caller: [self.mesh_requests, self.topic("mesh", "events")],
            self.mesh_service: [self.topic("mesh", "replies")],
        }


@dataclass
class Load:
    """Open-loop requests of one side: latencies of the answered ones, and what went wrong."""

    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: Load) -> None:
        self.sent += other.sent
        self.latencies_ms += other.latencies_ms
        self.lags_ms += other.lags_ms
        self.errors.update(other.errors)


@dataclass
class Side:
    """One contender: how it makes a request and publishes an event, and what it measured."""

    name: str
    request: Callable[[], Awaitable[object]]
    check: Callable[[], Awaitable[bool]]  # one request whose reply must echo the payload
    publish: Callable[[], Awaitable[object]]
    load: Load = field(default_factory=Load)
    published: int = 0
    publish_s: float = 0.0
    responder: dict[str, Any] = field(default_factory=dict)
    round_p99_ms: list[float | None] = field(default_factory=list)  # each latency round's

    @property
    def publish_per_s(self) -> float:
        return self.published / self.publish_s if self.publish_s > 0 else 0.0


# --- broker and topics --------------------------------------------------------------------

def ensure_broker(bootstrap: str) -> None:
    host, _, port = bootstrap.rpartition(":")
    if host not in LOCAL_HOSTS or not port.isdigit():
        raise SystemExit(f"bench: error: only a local broker (127.0.0.1:PORT), got {bootstrap}")
    print(f"==> broker: bash localstack/kafka/kafka.sh start (port {port})", flush=True)
    done = subprocess.run(["bash", "localstack/kafka/kafka.sh", "start"], cwd=ROOT,
                          env={**os.environ, "KAFKA_PORT": port},
                          timeout=BROKER_START_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: error: the broker did not start (exit {done.returncode})")


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap), request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
    return admin


async def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = await _admin(bootstrap)
    try:
        response = await asyncio.wait_for(
            admin.create_topics([NewTopic(t, partitions, 1) for t in topics]), ADMIN_TIMEOUT_S)
        failed = [(t[0], t[1]) for t in response.topic_errors if t[1] != 0]
        if failed:
            raise RuntimeError(f"could not create bench topics: {failed}")
    finally:
        await admin.close()
    await _wait_until_readable(bootstrap, topics, partitions)


async def _wait_until_readable(bootstrap: str, topics: list[str], partitions: int) -> None:
    """A new partition is usable once its leader answers ListOffsets (metadata may name the
    leader a moment before that; consumers would log NotLeaderForPartition meanwhile)."""
    every = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    consumer = AIOKafkaConsumer(**door_kwargs(bootstrap), request_timeout_ms=5000)
    await asyncio.wait_for(consumer.start(), ADMIN_TIMEOUT_S)
    try:
        give_up = time.monotonic() + TOPIC_READY_TIMEOUT_S
        while True:
            try:
                await asyncio.wait_for(consumer.end_offsets(every), ADMIN_TIMEOUT_S)
                return
            except KafkaError:
                if time.monotonic() > give_up:
                    raise
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = await _admin(bootstrap)
    try:
        await asyncio.wait_for(admin.delete_topics(topics), ADMIN_TIMEOUT_S)
    finally:
        await admin.close()


async def delete_topics_or_warn(bootstrap: str, topics: list[str], tag: str) -> None:
    """Delete a run's topics; a failure is reported, never raised over the bench's own error."""
    try:
        await delete_topics(bootstrap, topics)
    except Exception as exc:
        print(f"bench: warning: could not delete topics {tag}.*: {exc!r}", file=sys.stderr)


# --- load ---------------------------------------------------------------------------------

async def open_loop(call: Callable[[], Awaitable[object]], rate: float, duration_s: float,
                    grace_s: float) -> Load:
    """Issue ``call()`` on a fixed schedule, each in its own task; wait ``grace_s`` at most
    for the stragglers after the last one was issued."""
    load = Load()
    tasks: set[asyncio.Task[None]] = set()

    async def one(issued: float) -> None:
        try:
            await call()
        except Exception as exc:  # counted, never fatal: the load goes on
            load.errors[type(exc).__name__] += 1
            return
        load.latencies_ms.append((time.perf_counter() - issued) * 1000)

    start = time.perf_counter() + 0.005
    for offset in stats.schedule(rate, duration_s):
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        issued = time.perf_counter()
        load.lags_ms.append(max(0.0, issued - due) * 1000)
        tasks.add(asyncio.create_task(one(issued)))
        load.sent += 1
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            load.errors["unfinished"] += len(pending)
            await asyncio.wait(pending, timeout=5)
    return load


async def probe(side: Side) -> None:
    """Wait until the side's responder answers (its consumer group join takes a moment)."""
    for attempt in range(1, PROBE_ATTEMPTS + 1):
        try:
            if await asyncio.wait_for(side.check(), PROBE_TIMEOUT_S + 5):
                return
            raise RuntimeError(f"{side.name}: the echo reply differs from the request")
        except (TimeoutError, DeadlineExceeded):
            print(f"    {side.name}: no answer yet (attempt {attempt}/{PROBE_ATTEMPTS})",
                  flush=True)
    raise RuntimeError(f"{side.name}: no reply in {PROBE_ATTEMPTS * PROBE_TIMEOUT_S:g}s")


async def publish_for(send: Callable[[], Awaitable[object]], count: int, window: int) -> float:
    """Seconds to send ``count`` events, ``window`` of them in flight (gathered) at a time."""
    started = time.perf_counter()
    for size in stats.windows(count, window):
        await asyncio.wait_for(asyncio.gather(*(send() for _ in range(size))),
                               PUBLISH_WINDOW_TIMEOUT_S)
    return time.perf_counter() - started


def _ordered(sides: tuple[Side, Side], round_index: int) -> list[Side]:
    by_name = {side.name: side for side in sides}
    return [by_name[n] for n in stats.round_order((sides[0].name, sides[1].name), round_index)]


async def measure_latency(sides: tuple[Side, Side], args: argparse.Namespace) -> None:
    """Warm both sides up, then ``--rounds`` ABBA rounds of open-loop load, one side at a
    time, each round ``duration / rounds`` seconds per side."""
    grace = args.timeout_s + 2
    for side in sides:
        await probe(side)
    print(f"    warmup: {args.warmup:g}s per side", flush=True)
    for side in sides:
        await open_loop(side.request, args.rate, args.warmup, grace)
    slice_s = args.duration / args.rounds
    print(f"    measuring: {args.rounds} rounds x {slice_s:g}s per side at {args.rate:g} req/s",
          flush=True)
    for round_index in range(args.rounds):
        for side in _ordered(sides, round_index):
            load = await open_loop(side.request, args.rate, slice_s, grace)
            side.load.add(load)
            side.round_p99_ms.append(
                stats.summarize(load.latencies_ms).p99_ms if load.latencies_ms else None)


async def measure_publish(sides: tuple[Side, Side], args: argparse.Namespace) -> None:
    """A short warmup, then ``--messages`` per side split over ``--rounds`` ABBA rounds."""
    print(f"    publishing: {args.messages} x {args.size} B per side, {args.window} in flight, "
          f"{args.rounds} rounds", flush=True)
    for side in sides:
        await publish_for(side.publish, min(PUBLISH_WARMUP, args.messages), args.window)
    for round_index, count in enumerate(stats.split(args.messages, args.rounds)):
        for side in _ordered(sides, round_index):
            side.publish_s += await publish_for(side.publish, count, args.window)
            side.published += count


def _responder_args(settings: BusSettings, args: argparse.Namespace) -> list[str]:
    budget = 120 + 2 * (args.warmup + args.duration + args.timeout_s * (args.rounds + 1))
    return ["--bootstrap", settings.bootstrap_servers, "--linger-ms", str(settings.linger_ms),
            "--fetch-max-wait-ms", str(settings.fetch_max_wait_ms),
            "--max-seconds", f"{budget:g}"]


async def raw_side(stack: AsyncExitStack, settings: BusSettings, names: Names,
                   args: argparse.Namespace, probe_timeout_s: float) -> Side:
    """The raw contender (AIOKafkaProducer + AIOKafkaConsumer on one reply partition),
    started, closed when ``stack`` unwinds; ``args.size`` bytes a request and an event."""
    value = stats.encoded(stats.payload_of_size(args.size))
    caller = RawCaller(settings, names.raw_requests, names.topic("raw", "replies"),
                       args.partitions)
    stack.push_async_callback(caller.close)
    await caller.start()
    raw_events = names.topic("raw", "events")

    async def raw_check() -> bool:
        return await caller.request(value, probe_timeout_s) == value

    return Side("raw", lambda: caller.request(value, args.timeout_s), raw_check,
                lambda: caller.producer.send_and_wait(raw_events, value))


async def run_sides(settings: BusSettings, names: Names, args: argparse.Namespace,
                    keys: Path | None) -> tuple[Side, Side]:
    """Both callers and both responders up, latency rounds, responders down, publish rounds.
    Everything started here is stopped on the way out, whatever happens."""
    async with AsyncExitStack() as stack:
        raw = await raw_side(stack, settings, names, args, PROBE_TIMEOUT_S)

        # mesh: MeshClient (reply partition self-assigned)
        payload = stats.payload_of_size(args.size)
        operation = echo_operation(names.mesh_service)
        client = mesh_client(settings.model_copy(update={
            "service_name": names.mesh_caller, "reply_topic": names.topic("mesh", "replies"),
            **identity_settings(keys, names.mesh_caller),
        }))
        stack.push_async_callback(client.close)
        await client.start()
        mesh_events = names.topic("mesh", "events")

        async def mesh_check() -> bool:
            return await client.request(operation, payload, timeout_s=PROBE_TIMEOUT_S) == payload

        mesh = Side("mesh", lambda: client.request(operation, payload, timeout_s=args.timeout_s),
                    mesh_check, lambda: client.publish(mesh_events, "bench.event", payload))

        sides = (raw, mesh)
        async with AsyncExitStack() as responders:
            raw_responder = await responders.enter_async_context(spawn(
                "raw responder", "bench.raw_echo",
                ["--topic", names.raw_requests, "--group", f"{names.tag}.raw.echo",
                 "--commit", args.raw_commit, *_responder_args(settings, args)]))
            mesh_responder = await responders.enter_async_context(spawn(
                "mesh responder", "bench.mesh_echo",
                ["--service", names.mesh_service, "--group", f"{names.tag}.mesh.echo",
                 *([] if keys is None else ["--keys-dir", str(keys)]),
                 *_responder_args(settings, args)]))
            await measure_latency(sides, args)
        raw.responder, mesh.responder = raw_responder.counters, mesh_responder.counters
        await measure_publish(sides, args)
    return raw, mesh


# --- report -------------------------------------------------------------------------------

def client_settings(settings: BusSettings) -> dict[str, Any]:
    return {
        "linger_ms": settings.linger_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "fetch_min_bytes": FETCH_MIN_BYTES,
        "acks": "all",
        "enable_idempotence": True,
        "isolation_level": "read_committed",
    }


def result_of(raw: Side, mesh: Side, settings: BusSettings,
              args: argparse.Namespace) -> dict[str, Any]:
    r, m = stats.summarize(raw.load.latencies_ms), stats.summarize(mesh.load.latencies_ms)

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "raw_p50_ms": round(r.p50_ms, 3),
        "mesh_p50_ms": round(m.p50_ms, 3),
        "raw_p99_ms": round(r.p99_ms, 3),
        "mesh_p99_ms": round(m.p99_ms, 3),
        "raw_publish_per_s": round(raw.publish_per_s),
        "mesh_publish_per_s": round(mesh.publish_per_s),
        "p50_ratio": rounded(stats.ratio(m.p50_ms, r.p50_ms)),
        "p99_ratio": rounded(stats.ratio(m.p99_ms, r.p99_ms)),
        "publish_ratio": rounded(stats.ratio(mesh.publish_per_s, raw.publish_per_s)),
        "added_p50_ms": round(m.p50_ms - r.p50_ms, 3),
        # Each round's p99, mesh over raw (the sides alternate within a round): how far one
        # slow spell of a shared machine moves the pooled p99.
        "round_p99_ratios": [None if a is None or b is None else rounded(stats.ratio(b, a))
                             for a, b in zip(raw.round_p99_ms, mesh.round_p99_ms,
                                             strict=True)],
        **stats.targets(r.p50_ms, m.p50_ms, raw.publish_per_s, mesh.publish_per_s),
        "raw_errors": sum(raw.load.errors.values()),
        "mesh_errors": sum(mesh.load.errors.values()),
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "messages": args.messages,
        "size_bytes": args.size,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "mesh_signed": not args.insecure,
        "mesh_signing": "none" if args.insecure else args.signing,
        "raw_commit": args.raw_commit,
        **client_settings(settings),
    }


def print_report(raw: Side, mesh: Side, result: dict[str, Any]) -> None:
    r, m = stats.summarize(raw.load.latencies_ms), stats.summarize(mesh.load.latencies_ms)
    rows: list[tuple[str, str, str, str, str]] = [
        ("round trip p50 (ms)", f"{r.p50_ms:.3f}", f"{m.p50_ms:.3f}",
         stats.fmt_ratio(result["p50_ratio"]),
         f"added {result['added_p50_ms']:+.3f} ms, target < {stats.TARGET_ADDED_P50_MS} ms: "
         + ("OK" if result["added_p50_ok"] else "MISSED")),
        ("round trip p90 (ms)", f"{r.p90_ms:.3f}", f"{m.p90_ms:.3f}",
         stats.fmt_ratio(stats.ratio(m.p90_ms, r.p90_ms)), ""),
        ("round trip p99 (ms)", f"{r.p99_ms:.3f}", f"{m.p99_ms:.3f}",
         stats.fmt_ratio(result["p99_ratio"]), ""),
        ("round trip max (ms)", f"{r.max_ms:.3f}", f"{m.max_ms:.3f}",
         stats.fmt_ratio(stats.ratio(m.max_ms, r.max_ms)), ""),
        ("answered / sent", f"{r.count}/{raw.load.sent}", f"{m.count}/{mesh.load.sent}", "", ""),
        ("schedule lag p99 (ms)", f"{stats.summarize(raw.load.lags_ms).p99_ms:.3f}",
         f"{stats.summarize(mesh.load.lags_ms).p99_ms:.3f}", "", ""),
        ("publish (msg/s)", f"{raw.publish_per_s:,.0f}", f"{mesh.publish_per_s:,.0f}",
         stats.fmt_ratio(result["publish_ratio"]),
         f"target >= {stats.TARGET_PUBLISH_RATIO:.0%} of raw: "
         + ("OK" if result["publish_ratio_ok"] else "MISSED")),
    ]
    header = ("", "raw", "mesh", "mesh/raw", "target")
    print(f"{header[0]:<22}{header[1]:>12}{header[2]:>12}{header[3]:>10}  {header[4]}")
    for name, raw_cell, mesh_cell, ratio_cell, target in rows:
        print(f"{name:<22}{raw_cell:>12}{mesh_cell:>12}{ratio_cell:>10}  {target}")
    for side, which in (("raw", raw), ("mesh", mesh)):
        if which.load.errors:
            print(f"{side} errors: {dict(which.load.errors)}")
        print(f"{side} responder: {which.responder or 'no counters (killed?)'}")


# --- main ---------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = BusSettings(bootstrap_servers=args.bootstrap, linger_ms=args.linger_ms,
                           fetch_max_wait_ms=args.fetch_max_wait_ms)
    names = Names.fresh()
    print(f"settings: {client_settings(settings)}")
    print(f"load: {args.rate:g} req/s open-loop for {args.duration:g}s (warmup "
          f"{args.warmup:g}s), {args.size} B values, {args.partitions} partitions per topic; "
          f"publish {args.messages} messages, {args.window} in flight; {args.rounds} ABBA rounds")
    print(f"raw responder commits: {args.raw_commit}; mesh: "
          f"{'INSECURE (no signatures)' if args.insecure else f'signed ({args.signing})'}")
    print(f"==> topics {names.tag}.* ({len(names.topics())})", flush=True)
    try:
        await create_topics(args.bootstrap, names.topics(), args.partitions)
        with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys_dir:
            keys = None if args.insecure else Path(keys_dir)
            if keys is not None:
                provision_identities(keys, names.produce(), args.signing)
            raw, mesh = await run_sides(settings, names, args, keys)
    finally:
        await delete_topics_or_warn(args.bootstrap, names.topics(), names.tag)
    for side in (raw, mesh):
        if not side.load.latencies_ms:
            raise RuntimeError(f"{side.name}: no request was answered "
                               f"({side.load.sent} sent; errors: {dict(side.load.errors)})")
    result = result_of(raw, mesh, settings, args)
    print_report(raw, mesh, result)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mesh client vs raw aiokafka: round-trip latency and publish throughput.")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--messages", type=int, default=20_000, help="publish count")
    parser.add_argument("--size", type=int, default=200, help="value size in bytes")
    parser.add_argument("--window", type=int, default=500, help="publishes in flight")
    parser.add_argument("--rounds", type=int, default=4,
                        help="ABBA rounds the measured load and publishes are split into")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=5.0, help="per request")
    parser.add_argument("--raw-commit", choices=("background", "sync"), default="background",
                        help="raw responder commits in the background as ServiceWorker "
                             "does (default), or after each batch before the next fetch")
    parser.add_argument("--insecure", action="store_true",
                        help="mesh side without signatures (to see what signing costs)")
    parser.add_argument("--signing", choices=("ed25519", "pair-mac", "hmac-sha256"),
                        default="ed25519",
                        help="the mesh side's signature algorithm")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for name in ("rate", "duration", "warmup", "messages", "window", "partitions", "timeout_s",
                 "rounds"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.linger_ms < 0 or args.fetch_max_wait_ms < 0:
        parser.error("--linger-ms and --fetch-max-wait-ms must be >= 0")
    if args.rate * (args.duration + args.warmup) > 100_000:
        parser.error("rate x (duration + warmup) is capped at 100,000 requests")
    if args.messages > 1_000_000:
        parser.error("--messages is capped at 1,000,000")
    try:
        stats.payload_of_size(args.size)
    except ValueError as exc:
        parser.error(f"--size: {exc}")
    return args


def run_on_broker(args: argparse.Namespace,
                  run: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
                  ) -> None:
    """A broker bench's main: check the broker, name the machine, run, write ``args.output``
    and print the result as the last line."""
    ensure_broker(args.bootstrap)
    print(f"machine: {describe()}")
    try:
        result = asyncio.run(run(args))
    except KeyboardInterrupt:  # run() has stopped what it started and deleted its topics
        raise SystemExit("bench: interrupted") from None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    run_on_broker(parse_args(argv), run)


if __name__ == "__main__":
    main()
