"""Micro-benchmark: can a worker verify signatures off its event loop, and does it pay?

``python -m bench.verify_offloop [--batch 64 --batches 40 --rounds 3]`` verifies ``--batches``
batches of ``--batch`` signed requests (400-byte values, ``bus.security.signing.verify``) in
four ways, on each Ed25519 backend, and prints verifications per second (best of
``--rounds``; the ways take turns within each round):

- ``inline``: on the event loop, one batch after the other (what the worker does today);
- ``1 thread``: each batch in ``asyncio.to_thread`` (one worker thread), the loop free;
- ``2 threads``: two batches at a time, each in its own thread (both cores, if the backend
  releases the GIL while it computes);
- ``inline + ticker`` / ``1 thread + ticker``: as above while a 1 ms ticker runs on the loop,
  reporting the ticker's worst lateness: how long the loop could not serve I/O.

cffi (PyNaCl) releases the GIL around every libsodium call; ``cryptography``'s Ed25519 (Rust)
does not. A number to read, never a pass/fail. The output ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

from bus.envelope import Envelope, ReplyTo, new_request
from bus.security.ed25519 import BACKENDS, Backend
from bus.security.keys import ED25519, KeyRing, SigningKey
from bus.security.signing import sign, verify

TOPIC = "orders.requests"
TICK_S = 0.001


def signed_batch(backend: Backend, size: int, count: int) -> tuple[list[Envelope], KeyRing]:
    key = SigningKey("bench-ed", ED25519, os.urandom(32), backend=backend)
    now = int(time.time() * 1000)
    envelopes = [sign(new_request(source="gateway", operation="orders.create",
                                  value=os.urandom(size), reply_to=ReplyTo("mesh.replies", 0),
                                  deadline_ms=now + 10_000, at_ms=now), TOPIC, key)
                 for _ in range(count)]
    return envelopes, KeyRing([key.verify_key("gateway")])


def verify_all(envelopes: list[Envelope], ring: KeyRing) -> None:
    for envelope in envelopes:
        verify(envelope, TOPIC, ring)


async def inline(batch: list[Envelope], ring: KeyRing, batches: int) -> None:
    for _ in range(batches):
        verify_all(batch, ring)
        await asyncio.sleep(0)  # the loop's turn between batches, as a worker gets


async def one_thread(batch: list[Envelope], ring: KeyRing, batches: int) -> None:
    for _ in range(batches):
        await asyncio.to_thread(verify_all, batch, ring)


async def two_threads(batch: list[Envelope], ring: KeyRing, batches: int) -> None:
    for _ in range(batches // 2):
        await asyncio.gather(asyncio.to_thread(verify_all, batch, ring),
                             asyncio.to_thread(verify_all, batch, ring))


async def with_ticker(work: Awaitable[None]) -> float:
    """Run ``work`` beside a 1 ms ticker; the ticker's worst lateness in ms."""
    worst = 0.0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal worst
        while not stop.is_set():
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            worst = max(worst, time.perf_counter() - due)

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.wait_for(work, timeout=120)
    finally:
        stop.set()
        await asyncio.wait_for(ticker, timeout=5)
    return worst * 1000


Way = Callable[[list[Envelope], KeyRing, int], Awaitable[None]]
WAYS: dict[str, Way] = {"inline": inline, "1 thread": one_thread, "2 threads": two_threads}


async def measure(args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    count = args.batch * args.batches
    for backend in BACKENDS:
        batch, ring = signed_batch(backend, args.size, args.batch)
        for _ in range(args.rounds):
            for way, run in WAYS.items():
                started = time.perf_counter()
                await asyncio.wait_for(run(batch, ring, args.batches), timeout=120)
                rate = count / (time.perf_counter() - started)
                name = f"{backend.name} {way} verifications/s"
                results[name] = max(results.get(name, 0.0), rate)
            for way in ("inline", "1 thread"):
                lateness = await with_ticker(WAYS[way](batch, ring, args.batches))
                name = f"{backend.name} {way} + ticker: worst loop lateness ms"
                results[name] = min(results.get(name, float("inf")), lateness)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="signature verification off the event loop")
    parser.add_argument("--size", type=int, default=400, help="value bytes")
    parser.add_argument("--batch", type=int, default=64, help="records per batch")
    parser.add_argument("--batches", type=int, default=40, help="batches per run (even)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs, best kept")
    args = parser.parse_args(argv)
    if args.batches < 2 or args.batches % 2:
        parser.error("--batches must be an even number >= 2")
    results = asyncio.run(measure(args))
    for name, value in results.items():
        print(f"{name:58s} {value:10.1f}")
    print(json.dumps({"bench": "verify_offloop", "batch": args.batch, "batches": args.batches,
                      "size": args.size, "cpus": os.cpu_count(),
                      "results": {name: round(value, 2) for name, value in results.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
