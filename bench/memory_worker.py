"""A service worker's resident memory as it handles messages, on the real broker.

Responder (``python -m bench.memory_worker --service S --group G --checkpoints
10000,100000 ...``): an echo ``ServiceWorker`` built as ``bench.mesh_echo`` builds it
(signed, identity from files), plus a ``MemoryIdempotencyStore`` of ``--store-max``
entries. The handler reads its own VmRSS on the run that first reaches each checkpoint (a
count of handler runs), and a sampler every second, each with the interpreter's live
memory blocks (``sys.getallocatedblocks()``: objects kept alive, which RSS alone does not tell
from the allocators' settling); the sampler also tracks the largest size
of the worker's replay guard and of its idempotency store. Checkpoints taken in the handler
cannot be missed however fast the worker is stopped after its last message (a
sampler polling every 10 ms missed the last one when the caller finished in between). It
prints the figures as one JSON line when it stops (``proof.procs``).

The caller side is ``bench.memory.worker_memory``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench import rss
from bench.mesh_echo import echo_operation, identity_settings
from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.runtime.worker import ServiceWorker
from bus.security.identity import load_identity
from bus.security.replay import ReplayGuard
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from proof.procs import announce_ready, report, stop_event

SAMPLE_S = 0.01


def replay_guard_of(worker: ServiceWorker) -> ReplayGuard | None:
    """The worker's replay guard (private attributes: None if they moved)."""
    intake = getattr(worker, "_intake", None)
    guard = getattr(intake, "_guard", None)
    replay = getattr(guard, "replay", None)
    return replay if isinstance(replay, ReplayGuard) else None


class Checkpoints:
    """RSS at each handled-count checkpoint, taken on the handler run that reaches it."""

    def __init__(self, counts: list[int], figures: dict[str, Any]) -> None:
        self._pending = sorted(counts)
        self._figures = figures
        self.at: dict[str, float] = figures.setdefault("rss_mb_at", {})
        self.blocks_at: dict[str, int] = figures.setdefault("python_blocks_at", {})
        self.runs = 0

    def handler_ran(self) -> None:
        self.runs += 1
        while self._pending and self.runs >= self._pending[0]:
            count = str(self._pending.pop(0))
            self.at[count] = round(rss.rss_mb(), 2)
            self.blocks_at[count] = sys.getallocatedblocks()
            self._figures[f"handled_at_{len(self.at)}"] = self.runs


async def sample(worker: ServiceWorker, store: MemoryIdempotencyStore,
                 figures: dict[str, Any], stop: asyncio.Event) -> None:
    guard = replay_guard_of(worker)
    series: list[list[float]] = figures.setdefault("series", [])
    last_series = 0.0
    while not stop.is_set():
        handled = worker.handled
        if time.monotonic() - last_series >= 1.0:
            last_series = time.monotonic()
            series.append([handled, round(rss.rss_mb(), 2), sys.getallocatedblocks()])
        if guard is not None:
            figures["replay_max"] = max(figures.get("replay_max", 0), len(guard))
        figures["store_max"] = max(figures.get("store_max", 0), len(store))
        await asyncio.sleep(SAMPLE_S)


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    keys = Path(args.keys_dir)
    settings = BusSettings(bootstrap_servers=args.bootstrap, service_name=args.service,
                           fetch_max_wait_ms=args.fetch_max_wait_ms,
                           freshness_window_ms=args.window_ms,
                           replay_max_entries=args.replay_max,
                           **identity_settings(keys, args.service))
    stop = stop_event(args.max_seconds)
    service = Service(settings.service_name)
    figures: dict[str, Any] = {"rss_mb_start": round(rss.rss_mb(), 2),
                               "replay_bound": args.replay_max,
                               "window_ms": args.window_ms, "store_bound": args.store_max}
    checkpoints = Checkpoints([int(c) for c in args.checkpoints.split(",")], figures)

    @service.operation(echo_operation(service.name))
    async def echo(payload: Payload, message: Envelope) -> Payload:
        checkpoints.handler_ran()
        return payload

    transport = KafkaTransport(settings)
    store = MemoryIdempotencyStore(args.store_max)
    worker = ServiceWorker(service, transport, settings, load_identity(settings),
                           group_id=args.group, store=store)
    sampler = asyncio.create_task(sample(worker, store, figures, stop))
    announce_ready()
    try:
        await worker.run(stop)
    finally:
        stop.set()
        await asyncio.wait([sampler], timeout=5)
        await transport.close()
    figures.update(handled=worker.handled, rejected=worker.rejected,
                   duplicates=worker.duplicates, rss_mb_end=round(rss.rss_mb(), 2),
                   peak_mb=round(rss.peak_rss_mb(), 2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="Echo ServiceWorker that reports its RSS.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--service", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--keys-dir", required=True)
    parser.add_argument("--checkpoints", required=True, help="handled counts, comma-separated")
    parser.add_argument("--window-ms", type=int, default=300_000, help="freshness window")
    parser.add_argument("--replay-max", type=int, default=200_000)
    parser.add_argument("--store-max", type=int, default=100_000)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    report(asyncio.run(serve(parser.parse_args())))


if __name__ == "__main__":
    main()
