"""What a worker's durable idempotency costs per request on the REAL emulator, through
botocore and through the fast item calls (``functions.shared.aws_json``): ``python -m
bench.dynamodb_client [--requests 400 --rounds 4 --concurrency 1,16]``.

A "request" is what ``ServiceWorker`` does around a handler with a side effect: the claim
(``DynamoDBIdempotencyStore.begin``, one conditional ``PutItem``) and the completion
(``complete``, another), each in ``asyncio.to_thread`` as the store runs them, on a scratch
idempotency table (deleted at the end). Both clients take turns in ABBA rounds on the same
table; per side: latency of a request (p50, p99) at 1 and at ``--concurrency`` requests in
flight, requests per second, and the client's CPU per request (``time.process_time`` of this
process over the round: every thread, the emulator excluded, as it is another process).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from bench.machine import describe
from bench.stats import ratio, summarize
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from infra.settings import Settings
from infra.stack.tables import idempotency_table
from proof.tables import dynamodb_client, scratch_table

SIDES = ("botocore", "fast")
LEASE_MS = 30_000
KEEP_MS = 3_600_000
RESULT = b"R" + b'{"order_id":"ord_0123456789abcdef","total":"24.98"}'


def store_for(side: str, table: str, client_args: dict[str, Any]) -> DynamoDBIdempotencyStore:
    return DynamoDBIdempotencyStore(table, client_args=client_args, fast=side == "fast")


async def one_request(store: DynamoDBIdempotencyStore) -> float:
    started = time.perf_counter()
    key = f"bench/{uuid.uuid4().hex}"
    now = int(time.time() * 1000)
    claim = await store.begin(key, now_ms=now, lease_ms=LEASE_MS)
    if claim.token is None:
        raise AssertionError(f"a fresh key was not claimed: {claim}")
    if not await store.complete(key, RESULT, token=claim.token, now_ms=now, keep_ms=KEEP_MS):
        raise AssertionError("the claim holder could not complete")
    return (time.perf_counter() - started) * 1000


async def one_round(store: DynamoDBIdempotencyStore, requests: int, concurrency: int
                    ) -> dict[str, Any]:
    latencies: list[float] = []
    queue = list(range(requests))

    async def caller() -> None:
        while queue:
            queue.pop()
            latencies.append(await one_request(store))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"latencies": latencies, "cpu_s": cpu, "wall_s": wall}


def side_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for r in rounds for x in r["latencies"]]
    summary = summarize(latencies)
    count = len(latencies)
    return {"requests": count, "p50_ms": round(summary.p50_ms, 3),
            "p99_ms": round(summary.p99_ms, 3),
            "per_s": round(count / sum(r["wall_s"] for r in rounds), 1),
            "cpu_us_per_request": round(sum(r["cpu_s"] for r in rounds) / count * 1e6, 1)}


async def measure(table: str, client_args: dict[str, Any], args: argparse.Namespace
                  ) -> dict[str, Any]:
    stores = {side: store_for(side, table, client_args) for side in SIDES}
    for store in stores.values():  # clients built, connections open
        await one_round(store, 20, 1)
    points: dict[str, Any] = {}
    for concurrency in args.concurrency:
        rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for index in range(args.rounds):
            for side in SIDES if index % 2 == 0 else tuple(reversed(SIDES)):
                rounds[side].append(await one_round(stores[side], args.requests, concurrency))
        sides = {side: side_summary(found) for side, found in rounds.items()}
        fast, slow = sides["fast"], sides["botocore"]
        point = {**sides, "ratios": {
            name: None if found is None else round(found, 3)
            for name, found in (("p50", ratio(fast["p50_ms"], slow["p50_ms"])),
                                ("p99", ratio(fast["p99_ms"], slow["p99_ms"])),
                                ("cpu", ratio(fast["cpu_us_per_request"],
                                              slow["cpu_us_per_request"])),
                                ("per_s", ratio(fast["per_s"], slow["per_s"])))}}
        points[str(concurrency)] = point
        for side in SIDES:
            found = sides[side]
            print(f"{concurrency:>3} in flight  {side:<9} p50 {found['p50_ms']:7.3f} ms  p99 "
                  f"{found['p99_ms']:7.3f} ms  {found['per_s']:8.1f} req/s  "
                  f"{found['cpu_us_per_request']:7.1f} us CPU/request", flush=True)
        print(f"{concurrency:>3} in flight  fast/botocore: p50 {point['ratios']['p50']}x, "
              f"CPU {point['ratios']['cpu']}x, req/s {point['ratios']['per_s']}x", flush=True)
    return points


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Idempotency claim + completion per "
                                     "request: botocore vs the fast item calls, emulator.")
    parser.add_argument("--requests", type=int, default=400, help="per side and round")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds")
    parser.add_argument("--concurrency", type=lambda text: [int(x) for x in text.split(",")],
                        default=[1, 16], help="requests in flight, comma separated")
    args = parser.parse_args(argv)
    if min(args.requests, args.rounds, *args.concurrency) < 1:
        parser.error("every count must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    client_args = Settings.resolve().aws_client_args()
    print(f"machine: {describe()}", flush=True)
    with scratch_table(dynamodb_client(client_args), "bench-idempotency",
                       idempotency_table()) as table:
        points = asyncio.run(measure(table, client_args, args))
    print(json.dumps({"points": points, "requests": args.requests, "rounds": args.rounds,
                      "machine": describe()}))


if __name__ == "__main__":
    main()
