"""The edge's rate limiter at 10x overload from several clients, on the REAL emulator's
DynamoDB (issue 15): is the admitted count within 5 % of ``burst + rate * time``, and how
many table calls does each admitted request cost?

``python -m bench.ratelimit_overload [--processes 4 --rate 100 --burst 100 --duration 10
--overload 10 --rounds 2]``: a scratch rate-limit table is made on the emulator (deleted
after); each round, ``--processes`` separate processes (as separate Lambda instances are),
each with its own limiter and DynamoDB client, offer ``overload * rate`` requests per second
in all to one fresh bucket, paced by ``--clients`` tasks each, for ``--duration`` seconds.
Two limiters, in ABBA rounds: ``leased`` (``LeasedRateLimitStore``: tokens leased a few at a
time, the deployed one) and ``direct`` (``DynamoDBRateLimitStore`` alone: one conditional
write per admitted request, the limiter before issue 15).

``expected = burst + rate * window``, the window running from the first request's start to
the last request's end over every process (the bucket starts full at its first request);
``error = admitted / expected - 1``; the target is ``|error| <= 5 %`` for the leased limiter.
Table calls are counted in the store (reads and conditional writes, retries included).
``offered/s`` is what the processes managed to send: the direct limiter waits for the table
on every request, so on this emulator it may offer less than asked (reported, not hidden).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.machine import describe
from functions.gateway.ratelimit.bucket import BucketState, Decision, Limit, bucket_key
from functions.gateway.ratelimit.dynamodb import DynamoDBRateLimitStore, RateLimitError
from functions.gateway.ratelimit.leased import LeasedRateLimitStore, lease_size
from functions.gateway.ratelimit.table import rate_limit_table
from infra.settings import Settings
from proof.tables import dynamodb_client, scratch_table

TARGET_ERROR = 0.05
MODES = ("leased", "direct")
START_DELAY_S = 3.0  # every process is up and connected before the common start


class CountingStore(DynamoDBRateLimitStore):
    """The DynamoDB store, counting its table calls (from its worker threads)."""

    def __init__(self, table: str, client_args: Mapping[str, Any]) -> None:
        super().__init__(table, client_args=client_args)
        self.reads = 0
        self.writes = 0
        self._count = threading.Lock()

    def _read(self, key: str) -> Mapping[str, Any] | None:
        with self._count:
            self.reads += 1
        return super()._read(key)

    def _write(self, key: str, state: BucketState, limit: Limit,
               version: int | None) -> Mapping[str, Any]:
        with self._count:
            self.writes += 1
        return super()._write(key, state, limit, version)


@dataclass(frozen=True)
class Job:
    table: str
    client_args: dict[str, Any]
    key: str
    mode: str
    rate: float
    burst: int
    offered_per_s: float  # this process's share
    clients: int
    start_at: float  # epoch seconds, common to every process
    duration_s: float


def child(job: Job) -> dict[str, Any]:
    """One process: its own store and client, paced tasks on one bucket."""
    store = CountingStore(job.table, job.client_args)
    store.client()
    limiter: LeasedRateLimitStore | CountingStore = (
        LeasedRateLimitStore(store) if job.mode == "leased" else store)
    limit = Limit(job.rate, job.burst)
    interval = job.clients / job.offered_per_s
    sent = admitted = errors = 0
    first_ms: int | None = None
    last_ms = 0

    async def one() -> Decision:
        return await limiter.take(job.key, limit)

    async def client(offset: float) -> None:
        nonlocal sent, admitted, errors, first_ms, last_ms
        due = job.start_at + offset
        end = job.start_at + job.duration_s
        while due < end:
            pause = due - time.time()
            if pause > 0:
                await asyncio.sleep(pause)
            began = time.time_ns() // 1_000_000
            first_ms = began if first_ms is None else min(first_ms, began)
            try:
                decision = await one()
            except RateLimitError:
                errors += 1
            else:
                admitted += decision.allowed
            sent += 1
            last_ms = max(last_ms, time.time_ns() // 1_000_000)
            due = max(due + interval, time.time() - interval)  # late: do not burst to catch up

    async def run() -> None:
        async with asyncio.timeout(job.duration_s + START_DELAY_S + 60):
            await asyncio.gather(*(client(i * interval / job.clients)
                                   for i in range(job.clients)))

    asyncio.run(run())
    return {"sent": sent, "admitted": admitted, "errors": errors, "first_ms": first_ms,
            "last_ms": last_ms, "reads": store.reads, "writes": store.writes}


def warm(client_args: dict[str, Any]) -> int:
    """Import everything and make one client in a pool process, before any round's clock."""
    CountingStore("warm", client_args).client()
    return 0


def one_round(pool: Any, args: argparse.Namespace, table: str, client_args: dict[str, Any],
              mode: str) -> dict[str, Any]:
    key = bucket_key(route="bench overload", key=uuid.uuid4().hex[:16])
    start_at = time.time() + START_DELAY_S
    share = args.overload * args.rate / args.processes
    jobs = [Job(table, client_args, key, mode, args.rate, args.burst, share, args.clients,
                start_at, args.duration) for _ in range(args.processes)]
    parts: list[dict[str, Any]] = pool.map(child, jobs)
    starts = [p["first_ms"] for p in parts if p["first_ms"] is not None]
    window_s = (max(p["last_ms"] for p in parts) - min(starts)) / 1000
    admitted = sum(p["admitted"] for p in parts)
    expected = args.burst + args.rate * window_s
    sent = sum(p["sent"] for p in parts)
    writes, reads = sum(p["writes"] for p in parts), sum(p["reads"] for p in parts)
    return {"mode": mode, "admitted": admitted, "expected": round(expected, 1),
            "error": round(admitted / expected - 1, 4), "window_s": round(window_s, 3),
            "sent": sent, "offered_per_s": round(sent / window_s, 1),
            "errors": sum(p["errors"] for p in parts), "writes": writes, "reads": reads,
            "writes_per_admitted": round(writes / max(1, admitted), 3),
            "calls_per_request": round((writes + reads) / max(1, sent), 3)}


def summarize(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"rounds": rounds}
    for mode in MODES:
        mine = [r for r in rounds if r["mode"] == mode]
        if not mine:
            continue
        worst = max(mine, key=lambda r: abs(r["error"]))
        result[mode] = {
            "admitted": sum(r["admitted"] for r in mine),
            "expected": round(sum(r["expected"] for r in mine), 1),
            "worst_error": worst["error"],
            "offered_per_s": round(sum(r["offered_per_s"] for r in mine) / len(mine), 1),
            "writes_per_admitted": round(sum(r["writes"] for r in mine)
                                         / max(1, sum(r["admitted"] for r in mine)), 3),
            "calls_per_request": round(sum(r["writes"] + r["reads"] for r in mine)
                                       / max(1, sum(r["sent"] for r in mine)), 3),
        }
    leased = result.get("leased")
    result["leased_error_ok"] = leased is not None and abs(leased["worst_error"]) <= TARGET_ERROR
    result.update({"processes": args.processes, "clients": args.clients, "rate": args.rate,
                   "burst": args.burst, "lease": lease_size(Limit(args.rate, args.burst)),
                   "duration_s": args.duration, "overload": args.overload,
                   "target_error": TARGET_ERROR, "machine": describe()})
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Rate limiter at 10x overload, real emulator.")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8, help="paced tasks per process")
    parser.add_argument("--rate", type=float, default=100.0, help="tokens per second")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--overload", type=float, default=10.0, help="offered / rate")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (a pair each)")
    parser.add_argument("--only", choices=MODES, help="run one limiter only")
    args = parser.parse_args(argv)
    if min(args.processes, args.clients, args.burst, args.rounds) < 1 or min(
            args.rate, args.duration, args.overload) <= 0:
        parser.error("every count and duration must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    client_args = Settings.resolve().aws_client_args()
    rounds: list[dict[str, Any]] = []
    modes = (args.only,) if args.only else MODES
    with scratch_table(dynamodb_client(client_args), "bench-ratelimit",
                       rate_limit_table()) as table, \
            multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        pool.map(warm, [client_args] * args.processes)
        for index in range(args.rounds):
            for mode in modes if index % 2 == 0 else tuple(reversed(modes)):
                found = one_round(pool, args, table, client_args, mode)
                rounds.append(found)
                print(f"{mode:<7} admitted {found['admitted']:>6} of expected "
                      f"{found['expected']:>8} ({found['error'] * 100:+.2f} %), offered "
                      f"{found['offered_per_s']}/s, writes/admitted "
                      f"{found['writes_per_admitted']}, table calls/request "
                      f"{found['calls_per_request']}", flush=True)
    result = summarize(rounds, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
