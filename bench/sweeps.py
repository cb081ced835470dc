"""How round-trip latency, throughput and memory grow with the offered load, the number of
concurrent callers, the payload size and the partitions: mesh vs raw aiokafka on the real
broker, both measured in the same run (``python -m bench.sweeps [--fast]``).

The two sides are those of ``bench.mesh_vs_raw`` (``bench.raw_echo`` and ``bench.mesh_echo``
responders in their own processes; a ``RawCaller`` and a signed ``MeshClient`` here), with
``linger_ms=0`` and ``fetch_max_wait_ms=100``. For each partition count of the plan
(``bench.sweep_plan``) a fresh topic set is created (requests and replies of both sides,
``max.message.bytes`` 2 MiB) and a responder pair started; on the base partition count:

- load: open-loop requests at each rate (``bench.mesh_vs_raw.open_loop``: a side that cannot
  keep up queues, and shows it);
- callers: that many closed-loop callers (each sends its next request when the previous
  one is answered), throughput = answered per second;
- payload: values of each size, ``size_callers`` closed-loop callers;

and on every partition count, one open-loop point at ``partitions_rate`` (partitions sweep,
last, so the base set's is measured warm too).
Every point runs raw, mesh, mesh, raw (ABBA, ``point_s`` split in two) so a slow spell of the
shared machine hits both sides alike. After each point the VmRSS of both responders and of
this (caller) process is read from ``/proc``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from bench import rss, stats
from bench.callers import started_callers
from bench.cpu import SideCores
from bench.machine import describe
from bench.mesh_echo import echo_operation, provision_identities
from bench.mesh_vs_raw import (
    ADMIN_TIMEOUT_S,
    Names,
    _admin,
    _wait_until_readable,
    delete_topics_or_warn,
    ensure_broker,
    open_loop,
)
from bench.sweep_plan import FAST, FULL, MAX_MESSAGE_BYTES, Plan, point, side_summary
from bus.config import BusSettings
from proof.procs import Responder, spawn

Call = Callable[[bytes | None], Awaitable[object]]
PROBE_TIMEOUT_S = 20.0
PROBE_ATTEMPTS = 3


@dataclass
class Pair:
    """Both sides on one topic set: a request of a given value size, and the responders."""

    raw: Callable[[int], Awaitable[object]]
    mesh: Callable[[int], Awaitable[object]]
    responders: dict[str, Responder]

    def responder_pids(self) -> dict[str, int]:
        return {side: responder.process.pid for side, responder in self.responders.items()}

    def memory(self) -> dict[str, float]:
        found = {"caller": round(rss.rss_mb(), 1)}
        for name, responder in self.responders.items():
            with suppress(OSError, RuntimeError):
                found[f"{name}_responder"] = round(rss.rss_mb(responder.process.pid), 1)
        return found


async def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = await _admin(bootstrap)
    try:
        config = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
        response = await asyncio.wait_for(admin.create_topics(
            [NewTopic(t, partitions, 1, topic_configs=config) for t in topics]),
            ADMIN_TIMEOUT_S)
        failed = [(t[0], t[1]) for t in response.topic_errors if t[1] != 0]
        if failed:
            raise RuntimeError(f"could not create sweep topics: {failed}")
    finally:
        await admin.close()
    await _wait_until_readable(bootstrap, topics, partitions)


async def closed_loop(call: Callable[[], Awaitable[object]], callers: int, seconds: float,
                      timeout_s: float) -> tuple[list[float], int, int, float]:
    """``callers`` tasks, each sending its next request when the previous one is answered,
    until ``seconds`` have passed; latencies, sent, errors, elapsed seconds."""
    latencies: list[float] = []
    sent = errors = 0
    end = time.perf_counter() + seconds

    async def one_caller() -> None:
        nonlocal sent, errors
        while time.perf_counter() < end:
            sent += 1
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one_caller() for _ in range(callers))),
                           seconds + timeout_s + 10)
    return latencies, sent, errors, time.perf_counter() - started


async def measure(sweep: str, x: float, pair: Pair, plan: Plan, *, size: int = 200,
                  rate: float | None = None, callers: int = 1) -> dict[str, Any]:
    """One point: raw, mesh, mesh, raw, each ``point_s / 2``, with the cores each side's
    processes used (``bench.cpu.SideCores``): what tells queueing on a busy machine from the
    mesh's own cost."""
    collected: dict[str, tuple[list[float], int, int, float]] = {
        "raw": ([], 0, 0, 0.0), "mesh": ([], 0, 0, 0.0)}
    half = plan.point_s / 2
    cores = SideCores(pair.responder_pids())
    for side in ("raw", "mesh", "mesh", "raw"):
        request = pair.raw if side == "raw" else pair.mesh

        def call(request: Callable[[int], Awaitable[object]] = request) -> Awaitable[object]:
            return request(size)

        with cores.loaded(side):
            if rate is not None:
                load = await open_loop(call, rate, half, plan.timeout_s + 2)
                got = (load.latencies_ms, load.sent, sum(load.errors.values()), half)
            else:
                got = await closed_loop(call, callers, half, plan.timeout_s)
        before = collected[side]
        collected[side] = (before[0] + got[0], before[1] + got[1], before[2] + got[2],
                           before[3] + got[3])
    summaries = {side: side_summary(*values) for side, values in collected.items()}
    result = point(sweep, x, summaries["raw"], summaries["mesh"], pair.memory())
    result["cores"] = cores.mean()
    print(f"    {sweep:<10} {x:>9g}: raw p50 {summaries['raw'].get('p50_ms', float('nan')):8.2f}"
          f" ms, mesh p50 {summaries['mesh'].get('p50_ms', float('nan')):8.2f} ms, "
          f"mesh/raw {stats.fmt_ratio(result['ratio']['p50'])}; answered "
          f"{summaries['raw']['answered']}/{summaries['raw']['sent']} and "
          f"{summaries['mesh']['answered']}/{summaries['mesh']['sent']}; rss {result['rss_mb']}; "
          f"cores {result['cores']}", flush=True)
    return result


async def probe(name: str, check: Callable[[], Awaitable[bool]]) -> None:
    for attempt in range(1, PROBE_ATTEMPTS + 1):
        try:
            if await asyncio.wait_for(check(), PROBE_TIMEOUT_S + 5):
                return
            raise RuntimeError(f"{name}: the echo reply differs from the request")
        except TimeoutError:
            print(f"    {name}: no answer yet (attempt {attempt}/{PROBE_ATTEMPTS})", flush=True)
    raise RuntimeError(f"{name}: no reply in {PROBE_ATTEMPTS * PROBE_TIMEOUT_S:g}s")


async def topic_set(bootstrap: str, partitions: int, plan: Plan, keys: Path,
                    budget_s: float, signing: str = "ed25519") -> list[dict[str, Any]]:
    """Topics, responders and callers for ``partitions``; every point measured on them."""
    names = Names.fresh()
    topics = [names.raw_requests, names.mesh_requests, names.topic("raw", "replies"),
              names.topic("mesh", "replies")]
    settings = BusSettings(bootstrap_servers=bootstrap, linger_ms=0, fetch_max_wait_ms=100,
                           max_message_bytes=MAX_MESSAGE_BYTES)
    common = ["--bootstrap", bootstrap, "--linger-ms", "0", "--fetch-max-wait-ms", "100",
              "--max-message-bytes", str(MAX_MESSAGE_BYTES), "--max-seconds", f"{budget_s:g}"]
    print(f"==> {partitions} partition(s): topics {names.tag}.*", flush=True)
    await create_topics(bootstrap, topics, partitions)
    points: list[dict[str, Any]] = []
    try:
        provision_identities(keys, names.produce(), signing)
        async with AsyncExitStack() as stack:
            raw_caller, client = await started_callers(stack, settings, names, keys, partitions)
            operation = echo_operation(names.mesh_service)
            values = {size: stats.encoded(stats.payload_of_size(size))
                      for size in (200, *plan.sizes)}
            payloads = {size: stats.payload_of_size(size) for size in (200, *plan.sizes)}

            async def raw(size: int) -> object:
                return await raw_caller.request(values[size], plan.timeout_s)

            async def mesh(size: int) -> object:
                return await client.request(operation, payloads[size], timeout_s=plan.timeout_s)

            raw_responder = await stack.enter_async_context(spawn(
                "raw responder", "bench.raw_echo",
                ["--topic", names.raw_requests, "--group", f"{names.tag}.raw.echo", *common]))
            mesh_responder = await stack.enter_async_context(spawn(
                "mesh responder", "bench.mesh_echo",
                ["--service", names.mesh_service, "--group", f"{names.tag}.mesh.echo",
                 "--keys-dir", str(keys), *common]))
            pair = Pair(raw, mesh, {"raw": raw_responder, "mesh": mesh_responder})

            async def raw_check() -> bool:
                return await raw_caller.request(values[200], PROBE_TIMEOUT_S) == values[200]

            async def mesh_check() -> bool:
                answer = await client.request(operation, payloads[200],
                                              timeout_s=PROBE_TIMEOUT_S)
                return bool(answer == payloads[200])

            await probe("raw", raw_check)
            await probe("mesh", mesh_check)
            for warm in (raw, mesh):
                await open_loop(functools.partial(warm, 200), plan.partitions_rate,
                                plan.warmup_s, plan.timeout_s + 2)
            if partitions == plan.base_partitions:
                for rate in plan.rates:
                    points.append(await measure("load", rate, pair, plan, rate=rate))
                for callers in plan.callers:
                    points.append(await measure("callers", callers, pair, plan,
                                                callers=callers))
                for size in plan.sizes:
                    points.append(await measure("payload", size, pair, plan, size=size,
                                                callers=plan.size_callers))
            points.append(await measure("partitions", partitions, pair, plan,
                                        rate=plan.partitions_rate))
    finally:
        await delete_topics_or_warn(bootstrap, topics, names.tag)
    return points


async def run(plan: Plan, bootstrap: str, signing: str = "ed25519") -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    budget = 300 + 4 * plan.point_s * (len(plan.rates) + len(plan.callers) + len(plan.sizes) + 1)
    for partitions in plan.partitions:
        with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys_dir:
            points += await topic_set(bootstrap, partitions, plan, Path(keys_dir), budget,
                                      signing)
    return points


def failures(points: list[dict[str, Any]]) -> list[str]:
    """Points where a side answered nothing (the sweep then did not measure that point)."""
    return [f"{p['sweep']}={p['x']:g} {side}" for p in points for side in ("raw", "mesh")
            if not p[side]["answered"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mesh vs raw sweeps on the real broker.")
    parser.add_argument("--fast", action="store_true", help="tiny plan (seconds)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--signing", choices=("ed25519", "pair-mac"), default="ed25519",
                        help="Ed25519 signatures, or per-pair MACs (bus.security.pair_mac)")
    args = parser.parse_args(argv)
    plan = FAST if args.fast else FULL
    ensure_broker(args.bootstrap)
    print(f"machine: {describe()}")
    print(f"plan: {plan}", flush=True)
    print(f"signing: {args.signing}")
    points = asyncio.run(run(plan, args.bootstrap, args.signing))
    failed = failures(points)
    print(json.dumps({"plan": plan.__dict__, "signing": args.signing, "points": points,
                      "failed": failed,
                      "ok": not failed, "machine": describe()}))


if __name__ == "__main__":
    main()
