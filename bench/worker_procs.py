"""A worker that uses every core (issue 15): answered/s and p99 at ``--callers`` closed-loop
callers against one echo service run with 1 and with 2 worker processes
(``MESH_WORKER_PROCESSES``, ``bus.runtime.processes``), next to the raw aiokafka baseline in
the same run (``python -m bench.worker_procs [--fast]``), and where the cores went while
each side was loaded (``bench.cpu``: the callers' process, the responder's processes, the
whole machine), since two worker processes can only help while a core is idle.

One topic set (``bench.sweeps.create_topics``, ``--partitions`` partitions) and one raw
responder (``bench.raw_echo``, one process) for the whole run; the mesh responder is
``bench.mesh_echo --processes N``: a supervisor and N ``ServiceWorker`` children in one
consumer group (the same group for every N, so a new responder starts at the committed
offsets). Before a point is measured, the group must be stable with N members. Each point
is raw, mesh, mesh, raw (ABBA, ``bench.sweeps.closed_loop``), ``--seconds`` per side; the
process counts are visited in ABBA order too over ``--rounds`` rounds (1, 2, 2, 1, ...).
The last stdout line is one JSON object: the points and, per process count, the mesh's
answered/s and p99 with their ratios to raw, and to one process (mesh/raw at N over mesh/raw
at 1: the raw side of each point measures how busy the shared machine was then).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench import stats
from bench.callers import started_callers
from bench.cpu import SideCores
from bench.machine import describe
from bench.mesh_echo import echo_operation, provision_identities
from bench.mesh_vs_raw import Names, delete_topics_or_warn, ensure_broker, open_loop
from bench.sweep_plan import MAX_MESSAGE_BYTES, Plan, point, side_summary
from bench.sweeps import Pair, closed_loop, create_topics, probe
from bus.config import BusSettings
from proof.chaos.stack import group_stable
from proof.procs import spawn

SWEEP = "workers"
GROUP_TIMEOUT_S = 60.0
SIZE = 200


async def measure_point(count: int, pair: Pair, plan: Plan, callers: int) -> dict[str, Any]:
    """raw, mesh, mesh, raw (``bench.sweeps.closed_loop``, ``point_s / 2`` each), with the
    cores each side's processes used while it was loaded (``bench.cpu``): this process (the
    callers), the responder and its worker processes, the whole machine."""
    collected: dict[str, tuple[list[float], int, int, float]] = {
        "raw": ([], 0, 0, 0.0), "mesh": ([], 0, 0, 0.0)}
    cores = SideCores(pair.responder_pids())
    for side in ("raw", "mesh", "mesh", "raw"):
        request = pair.raw if side == "raw" else pair.mesh
        with cores.loaded(side):
            got = await closed_loop(functools.partial(request, SIZE), callers,
                                    plan.point_s / 2, plan.timeout_s)
        was = collected[side]
        collected[side] = (was[0] + got[0], was[1] + got[1], was[2] + got[2], was[3] + got[3])
    summaries = {side: side_summary(*values) for side, values in collected.items()}
    result = point(SWEEP, count, summaries["raw"], summaries["mesh"], pair.memory())
    result["cores"] = cores.mean()
    print(f"    {count} process(es): raw {summaries['raw']['per_s']}/s p99 "
          f"{summaries['raw'].get('p99_ms')} ms, mesh {summaries['mesh']['per_s']}/s p99 "
          f"{summaries['mesh'].get('p99_ms')} ms; cores {result['cores']}", flush=True)
    return result


def plan_of(args: argparse.Namespace) -> Plan:
    return Plan(partitions=(args.partitions,), base_partitions=args.partitions, rates=(),
                callers=(args.callers,), sizes=(), point_s=2 * args.seconds,
                warmup_s=args.warmup, partitions_rate=200, size_callers=1,
                timeout_s=args.timeout)


def process_order(counts: list[int], rounds: int) -> list[int]:
    """ABBA over the process counts: 1, 2, 2, 1, ... for ``rounds`` rounds."""
    order: list[int] = []
    for i in range(rounds):
        order += counts if i % 2 == 0 else counts[::-1]
    return order


def ratio_of(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    found = stats.ratio(a, b)
    return None if found is None else round(found, 3)


def per_request_us(cores: float | None, per_s: float | None) -> float | None:
    """Microseconds of a core per answered request, from cores busy at ``per_s``."""
    if cores is None or not per_s:
        return None
    return round(cores / per_s * 1_000_000, 1)


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Per process count, answered/s and p99 of both sides pooled over the rounds (mean of
    the points), mesh/raw ratios, and the mesh's answered/s relative to one process."""
    by: dict[str, dict[str, Any]] = {}
    for n in sorted({int(p["x"]) for p in points}):
        mine = [p for p in points if int(p["x"]) == n]

        def mean(side: str, key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [p[side][key] for p in mine if p[side].get(key) is not None]
            return round(sum(values) / len(values), 3) if values else None

        row: dict[str, Any] = {f"{side}_{key}": mean(side, key)
                               for side in ("raw", "mesh") for key in ("per_s", "p50_ms", "p99_ms")}
        for side in ("raw", "mesh"):
            runs = [p["cores"][side] for p in mine if p.get("cores", {}).get(side)]
            row[f"{side}_cores"] = {k: round(sum(r.get(k, 0.0) for r in runs) / len(runs), 2)
                                    for k in runs[0]} if runs else {}
        # what a core of worker processes answers: the figure that carries to more cores
        # while the callers and the broker keep up
        row["mesh_per_worker_core_s"] = ratio_of(row["mesh_per_s"],
                                                 row["mesh_cores"].get("responder"))
        # what one request cost each side's processes, in microseconds of a core: the
        # measured reason behind the answered/s ratio on a machine with no idle core
        row["cpu_us_per_request"] = {
            side: {part: per_request_us(row[f"{side}_cores"].get(part), row[f"{side}_per_s"])
                   for part in ("responder", "callers")} for side in ("raw", "mesh")}
        row["per_s_ratio"] = ratio_of(row["mesh_per_s"], row["raw_per_s"])
        row["p99_ratio"] = ratio_of(row["mesh_p99_ms"], row["raw_p99_ms"])
        by[str(n)] = row
    # N processes over one, each against the raw baseline of its own points: the machine is
    # shared, so the load of others drifts between points, and the raw side measures it
    one = by.get("1", {}).get("per_s_ratio")
    for row in by.values():
        row["mesh_per_s_over_one_process"] = ratio_of(row["per_s_ratio"], one)
    return by


async def run(args: argparse.Namespace, keys: Path) -> list[dict[str, Any]]:
    plan = plan_of(args)
    names = Names.fresh()
    topics = [names.raw_requests, names.mesh_requests, names.topic("raw", "replies"),
              names.topic("mesh", "replies")]
    settings = BusSettings(bootstrap_servers=args.bootstrap, linger_ms=0, fetch_max_wait_ms=100,
                           max_message_bytes=MAX_MESSAGE_BYTES)
    order = process_order(args.processes, args.rounds)
    budget = 120 + len(order) * (4 * args.seconds + args.warmup + GROUP_TIMEOUT_S)
    common = ["--bootstrap", args.bootstrap, "--linger-ms", "0", "--fetch-max-wait-ms", "100",
              "--max-message-bytes", str(MAX_MESSAGE_BYTES), "--max-seconds", f"{budget:g}"]
    mesh_group = f"{names.tag}.mesh.echo"
    print(f"==> topics {names.tag}.* ({args.partitions} partitions), processes {order}",
          flush=True)
    await create_topics(args.bootstrap, topics, args.partitions)
    points: list[dict[str, Any]] = []
    try:
        provision_identities(keys, names.produce(), args.signing)
        async with AsyncExitStack() as stack:
            raw_caller, client = await started_callers(stack, settings, names, keys,
                                                       args.partitions)
            operation = echo_operation(names.mesh_service)
            value = stats.encoded(stats.payload_of_size(SIZE))
            payload = stats.payload_of_size(SIZE)

            async def raw(size: int) -> object:
                return await raw_caller.request(value, plan.timeout_s)

            async def mesh(size: int) -> object:
                return await client.request(operation, payload, timeout_s=plan.timeout_s)

            async def raw_check() -> bool:
                return await raw_caller.request(value, plan.timeout_s) == value

            async def mesh_check() -> bool:
                return bool(await client.request(operation, payload,
                                                 timeout_s=plan.timeout_s) == payload)

            raw_responder = await stack.enter_async_context(spawn(
                "raw responder", "bench.raw_echo",
                ["--topic", names.raw_requests, "--group", f"{names.tag}.raw.echo", *common]))
            await probe("raw", raw_check)
            for count in order:
                async with spawn(f"mesh responder ({count} processes)", "bench.mesh_echo",
                                 ["--service", names.mesh_service, "--group", mesh_group,
                                  "--keys-dir", str(keys), "--processes", str(count),
                                  "--handler-cpu-ms", f"{args.handler_cpu_ms:g}",
                                  *common]) as mesh_responder:
                    await group_stable(args.bootstrap, mesh_group, count, GROUP_TIMEOUT_S)
                    await probe("mesh", mesh_check)
                    for warm in (raw, mesh):
                        await open_loop(functools.partial(warm, SIZE), 200, plan.warmup_s,
                                        plan.timeout_s + 2)
                    pair = Pair(raw, mesh, {"raw": raw_responder, "mesh": mesh_responder})
                    points.append(await measure_point(count, pair, plan, args.callers))
    finally:
        await delete_topics_or_warn(args.bootstrap, topics, names.tag)
    return points


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few seconds a point, 1 round")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--processes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2], help="process counts, comma separated (default 1,2)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="per side and round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--handler-cpu-ms", type=float, default=0.0,
                        help="CPU the mesh echo handler spends per request (the raw one none): "
                             "a worker bound by its handler, as a computing service is")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--signing", choices=("ed25519", "pair-mac"), default="ed25519",
                        help="Ed25519 signatures, or per-pair MACs (bus.security.pair_mac)")
    args = parser.parse_args(argv)
    if args.fast:
        args.seconds, args.warmup, args.rounds = 1.0, 0.5, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_broker(args.bootstrap)
    print(f"machine: {describe()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys_dir:
        points = asyncio.run(run(args, Path(keys_dir)))
    failed = [f"{SWEEP}={p['x']:g} {side}" for p in points for side in ("raw", "mesh")
              if not p[side]["answered"]]
    by = summary(points)
    for n, row in by.items():
        print(f"    {n} process(es): mesh {row['mesh_per_s']}/s p99 {row['mesh_p99_ms']} ms; "
              f"raw {row['raw_per_s']}/s p99 {row['raw_p99_ms']} ms; mesh/raw answered/s "
              f"{stats.fmt_ratio(row['per_s_ratio'])}, x{row['mesh_per_s_over_one_process']} "
              "of one process", flush=True)
    print(json.dumps({"callers": args.callers, "signing": args.signing,
                      "partitions": args.partitions,
                      "handler_cpu_ms": args.handler_cpu_ms,
                      "processes": args.processes, "rounds": args.rounds,
                      "seconds": args.seconds, "points": points, "by_processes": by,
                      "failed": failed, "ok": not failed, "machine": describe()}))


if __name__ == "__main__":
    main()
