"""The mesh on librdkafka vs the mesh on aiokafka vs raw aiokafka, in one run on one broker
(``python -m bench.transport_compare [--rate 200 --callers 100 --messages 20000 ...]``).

Three sides, each with its own topics (``bench<hex>.*``, deleted at the end) and its own
responder process, both mesh sides signed as in production (fresh Ed25519 keys, key ring and
access map for the run):

- ``raw``: ``bench.raw_echo`` and a ``RawCaller`` (aiokafka, the clients ``KafkaTransport``
  makes), as in ``bench.mesh_vs_raw``;
- ``mesh-aiokafka``: ``bench.mesh_echo`` (``ServiceWorker``) and a ``MeshClient``, both on
  ``bus.transport.kafka``;
- ``mesh-rdkafka``: the same on ``bus.transport.rdkafka`` (``MESH_TRANSPORT=rdkafka``).

Measured: open-loop request/reply at ``--rate`` (p50, p99), ``--callers`` closed-loop callers
(answered per second, p99), and publishing ``--messages`` events ``--window`` in flight. Only
one side is loaded at a time, in rounds ABC then CBA (each side as often early as late), so a
slow spell of the shared machine falls on all alike. Ratios are against raw measured in the
same run. The last line is one JSON object (also in ``bench/results/transport_compare.json``).
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.mesh_echo import echo_operation, identity_settings, mesh_client, provision_identities
from bench.mesh_vs_raw import (
    Names,
    Side,
    create_topics,
    delete_topics_or_warn,
    open_loop,
    probe,
    publish_for,
    raw_side,
    run_on_broker,
)
from bench.sweeps import closed_loop
from bus.config import BusSettings
from bus.runtime.client import MeshClient
from proof.procs import ROOT, spawn

RESULTS = ROOT / "bench" / "results" / "transport_compare.json"
MESH_SIDES = {"mesh-aiokafka": "aiokafka", "mesh-rdkafka": "rdkafka"}
PUBLISH_WARMUP = 1000


@dataclass(frozen=True)
class Layout:
    """This run's names: the raw side's (``Names``) and one service per mesh side."""

    names: Names

    def service(self, side: str) -> str:
        return f"{self.names.tag}{MESH_SIDES[side][:2]}echo"

    def caller(self, side: str) -> str:
        return f"{self.names.tag}{MESH_SIDES[side][:2]}caller"

    def topic(self, side: str, kind: str) -> str:
        return f"{self.names.tag}.{MESH_SIDES[side][:2]}.{kind}"

    def topics(self) -> list[str]:
        mesh = [t for side in MESH_SIDES for t in (f"{self.service(side)}.requests",
                                                     self.topic(side, "replies"),
                                                     self.topic(side, "events"))]
        return [self.names.raw_requests, self.names.topic("raw", "replies"),
                self.names.topic("raw", "events"), *mesh]

    def produce(self) -> dict[str, list[str]]:
        access: dict[str, list[str]] = {}
        for side in MESH_SIDES:
            access[self.caller(side)] = [f"{self.service(side)}.requests",
                                         self.topic(side, "events")]
            access[self.service(side)] = [self.topic(side, "replies")]
        return access


@dataclass
class Closed:
    latencies_ms: list[float] = field(default_factory=list)
    answered: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0


def mesh_side(name: str, client: MeshClient, operation: str, events: str,
              payload: dict[str, Any], timeout_s: float) -> Side:
    async def request() -> object:
        return await client.request(operation, payload, timeout_s=timeout_s)

    async def check() -> bool:
        return bool(await request() == payload)

    async def publish() -> object:
        return await client.publish(events, "bench.event", payload)

    return Side(name, request, check, publish)


def order(sides: list[Side], round_index: int) -> list[Side]:
    return sides if round_index % 2 == 0 else list(reversed(sides))


def responder_args(settings: BusSettings, args: argparse.Namespace) -> list[str]:
    budget = 180 + 3 * (args.warmup + args.duration + args.closed_s) + 10 * args.timeout_s
    return ["--bootstrap", settings.bootstrap_servers, "--linger-ms", str(settings.linger_ms),
            "--fetch-max-wait-ms", str(settings.fetch_max_wait_ms), "--max-seconds",
            f"{budget:g}"]


async def measure(sides: list[Side], args: argparse.Namespace) -> dict[str, Closed]:
    """Probe, warm up, then the open-loop and the closed-loop rounds."""
    grace = args.timeout_s + 2
    for side in sides:
        await probe(side)
        await open_loop(side.request, args.rate, args.warmup, grace)
    print(f"    open loop: {args.rounds} rounds x {args.duration / args.rounds:g}s per side at "
          f"{args.rate:g} req/s", flush=True)
    for round_index in range(args.rounds):
        for side in order(sides, round_index):
            side.load.add(await open_loop(side.request, args.rate, args.duration / args.rounds,
                                          grace))
    closed = {side.name: Closed() for side in sides}
    print(f"    closed loop: {args.callers} callers, {args.rounds} rounds x "
          f"{args.closed_s / args.rounds:g}s per side", flush=True)
    for round_index in range(args.rounds):
        for side in order(sides, round_index):
            latencies, _sent, errors, seconds = await closed_loop(
                side.request, args.callers, args.closed_s / args.rounds, args.timeout_s)
            got = closed[side.name]
            got.latencies_ms += latencies
            got.answered += len(latencies)
            got.errors += errors
            got.seconds += seconds
    return closed


async def publish(sides: list[Side], args: argparse.Namespace) -> None:
    print(f"    publishing: {args.messages} x {args.size} B per side, {args.window} in flight",
          flush=True)
    for side in sides:
        await publish_for(side.publish, min(PUBLISH_WARMUP, args.messages), args.window)
    for round_index, count in enumerate(stats.split(args.messages, args.rounds)):
        for side in order(sides, round_index):
            side.publish_s += await publish_for(side.publish, count, args.window)
            side.published += count


async def run_sides(settings: BusSettings, layout: Layout, args: argparse.Namespace,
                    keys: Path) -> tuple[list[Side], dict[str, Closed]]:
    names = layout.names
    payload = stats.payload_of_size(args.size)
    async with AsyncExitStack() as stack:
        sides = [await raw_side(stack, settings, names, args, args.timeout_s)]
        for name, transport in MESH_SIDES.items():
            client = mesh_client(settings.model_copy(update={
                "service_name": layout.caller(name), "transport": transport,
                "reply_topic": layout.topic(name, "replies"),
                **identity_settings(keys, layout.caller(name))}))
            stack.push_async_callback(client.close)
            await client.start()
            operation, events = echo_operation(layout.service(name)), layout.topic(name, "events")

            sides.append(mesh_side(name, client, operation, events, payload, args.timeout_s))
        async with AsyncExitStack() as responders:
            procs = {"raw": await responders.enter_async_context(spawn(
                "raw responder", "bench.raw_echo",
                ["--topic", names.raw_requests, "--group", f"{names.tag}.raw.echo",
                 "--commit", "background", *responder_args(settings, args)]))}
            for name, transport in MESH_SIDES.items():
                procs[name] = await responders.enter_async_context(spawn(
                    f"{name} responder", "bench.mesh_echo",
                    ["--service", layout.service(name), "--group", f"{layout.service(name)}.g",
                     "--keys-dir", str(keys), "--transport", transport,
                     *responder_args(settings, args)]))
            closed = await measure(sides, args)
        for side in sides:
            side.responder = procs[side.name].counters
        await publish(sides, args)
    return sides, closed


def result_of(sides: list[Side], closed: dict[str, Closed],
              args: argparse.Namespace) -> dict[str, Any]:
    raw = next(side for side in sides if side.name == "raw")
    base = stats.summarize(raw.load.latencies_ms)
    base_closed = stats.summarize(closed["raw"].latencies_ms)
    result: dict[str, Any] = {"rate_per_s": args.rate, "callers": args.callers,
                              "messages": args.messages, "size_bytes": args.size,
                              "partitions": args.partitions, "rounds": args.rounds}
    for side in sides:
        open_ = stats.summarize(side.load.latencies_ms)
        closed_ = stats.summarize(closed[side.name].latencies_ms)
        result[side.name] = {
            "p50_ms": round(open_.p50_ms, 3), "p99_ms": round(open_.p99_ms, 3),
            "answered_open": f"{open_.count}/{side.load.sent}",
            "answered_per_s": round(closed[side.name].per_s),
            "closed_p99_ms": round(closed_.p99_ms, 3),
            "publish_per_s": round(side.publish_per_s),
            "errors": sum(side.load.errors.values()) + closed[side.name].errors,
            "vs_raw": {
                "added_p50_ms": round(open_.p50_ms - base.p50_ms, 3),
                "p99": stats.ratio(open_.p99_ms, base.p99_ms),
                "answered_per_s": stats.ratio(closed[side.name].per_s, closed["raw"].per_s),
                "closed_p99": stats.ratio(closed_.p99_ms, base_closed.p99_ms),
                "publish": stats.ratio(side.publish_per_s, raw.publish_per_s),
            },
            "responder": side.responder,
        }
    return result


def print_report(result: dict[str, Any], sides: list[Side]) -> None:
    names = [side.name for side in sides]
    print(f"{'':<26}" + "".join(f"{n:>16}" for n in names))
    rows = [("open loop p50 (ms)", "p50_ms"), ("open loop p99 (ms)", "p99_ms"),
            ("open loop answered", "answered_open"),
            (f"answered/s, {result['callers']} callers", "answered_per_s"),
            ("closed loop p99 (ms)", "closed_p99_ms"), ("publish (msg/s)", "publish_per_s"),
            ("errors", "errors")]
    for label, key in rows:
        print(f"{label:<26}" + "".join(f"{result[n][key]!s:>16}" for n in names))
    for key in ("added_p50_ms", "p99", "answered_per_s", "closed_p99", "publish"):
        cells = [result[n]["vs_raw"][key] for n in names]
        print(f"{'vs raw: ' + key:<26}" + "".join(
            f"{'-' if c is None else round(c, 3)!s:>16}" for c in cells))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = BusSettings(bootstrap_servers=args.bootstrap, linger_ms=0,
                           fetch_max_wait_ms=args.fetch_max_wait_ms)
    layout = Layout(Names.fresh())
    topics = layout.topics()
    print(f"==> topics {layout.names.tag}.* ({len(topics)})", flush=True)
    try:
        await create_topics(args.bootstrap, topics, args.partitions)
        with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys_dir:
            provision_identities(Path(keys_dir), layout.produce())
            sides, closed = await run_sides(settings, layout, args, Path(keys_dir))
    finally:
        await delete_topics_or_warn(args.bootstrap, topics, layout.names.tag)
    result = result_of(sides, closed, args)
    print_report(result, sides)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--duration", type=float, default=8.0, help="open-loop seconds a side")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--callers", type=int, default=100, help="closed-loop callers")
    parser.add_argument("--closed-s", type=float, default=6.0,
                        help="closed-loop seconds a side")
    parser.add_argument("--messages", type=int, default=20_000, help="publish count a side")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--window", type=int, default=500, help="publishes in flight")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=100)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for name in ("rate", "duration", "warmup", "callers", "closed_s", "messages", "window",
                 "rounds", "partitions", "timeout_s"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    run_on_broker(parse_args(argv), run)


if __name__ == "__main__":
    main()
