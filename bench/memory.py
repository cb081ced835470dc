"""Memory as part of the proof (issue 7): ``python -m bench.memory [--fast]``.

Three figures, each next to its target, one JSON line at the end:

1. gateway: the gateway handler's VmRSS after ``--gateway-requests`` requests, in a fresh
   interpreter (``bench.memory_gateway``). Target: under 128 MiB after 1,000.
2. worker: an echo ``ServiceWorker`` (signed, with an in-memory idempotency store) on the
   real broker, in its own process (``bench.memory_worker``), driven by a ``MeshClient``
   with ``--concurrency`` requests in flight until it handled the last checkpoint; its
   VmRSS at each checkpoint. Target: under 10% growth from the first checkpoint (10,000) to
   the last (100,000). Its replay guard is given a short freshness window (``--window-ms``,
   2 s: at the ~1,700 msg/s this machine carries, ~3,400 ids) so that the guard, a cache
   bounded by its window, is full well before the first checkpoint: the growth measured is
   then what is NOT bounded (a leak). The RSS series is reported too, to see a plateau. The
   guard's and the store's largest sizes are reported with their bounds.
3. caches: the replay guard and the idempotency store under a simulated load far above
   what the broker could carry (``bench.memory_bounds``). Target: never above their bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import describe
from bench.mesh_echo import echo_operation, identity_settings, mesh_client, provision_identities
from bench.mesh_vs_raw import Names, create_topics, delete_topics, ensure_broker
from bus.config import BusSettings
from bus.errors import MeshError
from proof.procs import ROOT, spawn

TARGET_WORKER_GROWTH = 0.10
REQUEST_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 20.0
PROBE_ATTEMPTS = 3
CHILD_TIMEOUT_S = 600.0
PARTITIONS = 4


def last_json(output: str) -> dict[str, Any]:
    """The last line of ``output`` that is a JSON object."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                decoded = json.loads(line)
            except ValueError:
                continue
            if isinstance(decoded, dict):
                return decoded
    raise ValueError("no JSON object line in the output")


def child(module: str, *args: str, timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh interpreter; its last JSON line."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-2000:]}")
    return last_json(done.stdout)


def growth(at: dict[str, float], first: int, last: int) -> float | None:
    """Relative RSS growth from checkpoint ``first`` to ``last`` (None if one is missing)."""
    a, b = at.get(str(first)), at.get(str(last))
    return None if a is None or b is None or a == 0 else (b - a) / a


async def _drive(operation: str, settings: BusSettings, total: int, concurrency: int
                 ) -> dict[str, Any]:
    client = mesh_client(settings)
    await client.start()
    sent = answered = errors = 0
    payload = {"data": "x" * 100}
    try:
        for attempt in range(1, PROBE_ATTEMPTS + 1):
            try:
                await client.request(operation, payload, timeout_s=PROBE_TIMEOUT_S)
                break
            except Exception:
                if attempt == PROBE_ATTEMPTS:
                    raise
        started = time.perf_counter()

        # Until ``total`` answers (not sends): a failed request must not leave the worker
        # short of its last checkpoint. The caller's time budget bounds the loop.
        async def caller() -> None:
            nonlocal sent, answered, errors
            while answered < total and errors < total:
                sent += 1
                try:
                    await client.request(operation, payload, timeout_s=REQUEST_TIMEOUT_S)
                    answered += 1
                except MeshError:
                    errors += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return {"sent": sent + 1, "answered": answered + 1, "errors": errors,
            "seconds": round(elapsed, 1), "per_s": round(sent / elapsed) if elapsed else 0}


async def worker_memory(bootstrap: str, checkpoints: list[int], concurrency: int,
                        window_ms: int, replay_max: int, store_max: int) -> dict[str, Any]:
    names = Names.fresh()
    topics = [names.mesh_requests, names.topic("mesh", "replies")]
    total = max(checkpoints)
    await create_topics(bootstrap, topics, PARTITIONS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys_dir:
            keys = Path(keys_dir)
            provision_identities(keys, names.produce())
            caller = BusSettings(bootstrap_servers=bootstrap, service_name=names.mesh_caller,
                                 reply_topic=names.topic("mesh", "replies"),
                                 fetch_max_wait_ms=100,
                                 **identity_settings(keys, names.mesh_caller))
            budget = 120 + total / 50
            async with spawn("memory worker", "bench.memory_worker", [
                "--bootstrap", bootstrap, "--service", names.mesh_service,
                "--group", f"{names.tag}.mem", "--keys-dir", str(keys),
                "--checkpoints", ",".join(map(str, checkpoints)),
                "--window-ms", str(window_ms), "--replay-max", str(replay_max),
                "--store-max", str(store_max), "--max-seconds", f"{budget:g}",
            ]) as responder:
                load = await asyncio.wait_for(
                    _drive(echo_operation(names.mesh_service), caller, total, concurrency),
                    budget)
    finally:
        await delete_topics(bootstrap, topics)
    figures = responder.counters
    if not figures:
        raise RuntimeError("the memory worker reported nothing (killed?)")
    grown = growth(figures.get("rss_mb_at", {}), min(checkpoints), total)
    return {
        **figures,
        "load": load,
        "concurrency": concurrency,
        "checkpoints": checkpoints,
        "growth": None if grown is None else round(grown, 4),
        "target_growth": TARGET_WORKER_GROWTH,
        "growth_ok": grown is not None and grown < TARGET_WORKER_GROWTH,
        "replay_ok": figures.get("replay_max", 0) <= replay_max,
        "store_ok": figures.get("store_max", 0) <= store_max,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    print(f"==> gateway RSS after {args.gateway_requests} requests", flush=True)
    gateway = child("bench.memory_gateway", "--requests", str(args.gateway_requests))
    print(f"    {gateway}", flush=True)
    print(f"==> replay guard and idempotency store bounds ({args.bounds_messages} ids)",
          flush=True)
    bounds = child("bench.memory_bounds", "--messages", str(args.bounds_messages))
    for cache in bounds["caches"]:
        print(f"    {cache['name']}: max {cache['max_size']} <= {cache['bound']}: {cache['ok']}")
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    print(f"==> worker RSS at {checkpoints} handled messages (real broker)", flush=True)
    ensure_broker(args.bootstrap)
    worker = asyncio.run(worker_memory(args.bootstrap, checkpoints, args.concurrency,
                                       args.window_ms, args.replay_max, args.store_max))
    print(f"    rss at {worker.get('rss_mb_at')}, growth {worker['growth']}, live blocks "
          f"{worker.get('python_blocks_at')}, load {worker['load']}", flush=True)
    return {
        "gateway": gateway,
        "worker": worker,
        "bounds": bounds,
        "targets_met": {
            "gateway_rss_under_128mb": bool(gateway["rss_ok"]),
            "worker_growth_under_10pct": bool(worker["growth_ok"]),
            "caches_bounded": bool(bounds["all_bounded"] and worker["replay_ok"]
                                   and worker["store_ok"]),
        },
        "fast": args.fast,
        "machine": describe(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway and worker memory, cache bounds.")
    parser.add_argument("--fast", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument("--gateway-requests", type=int, default=1000)
    parser.add_argument("--checkpoints", default="10000,100000")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--window-ms", type=int, default=2_000)
    parser.add_argument("--replay-max", type=int, default=200_000)
    parser.add_argument("--store-max", type=int, default=5_000)
    parser.add_argument("--bounds-messages", type=int, default=200_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    if args.fast:
        args.gateway_requests = min(args.gateway_requests, 100)
        args.checkpoints = "200,1000"
        args.bounds_messages = min(args.bounds_messages, 5_000)
        args.store_max = min(args.store_max, 100)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"machine: {describe()}")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
