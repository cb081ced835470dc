"""Scenario: the emulator (DynamoDB, the idempotency store) is restarted during load.

A private emulator (own port and state folder, ``PERSIST_STATE`` as the shared one; the
shared emulator is never touched) holds the idempotency table; a worker in this process
uses it, the caller is on the shared broker. Mid-load the emulator is stopped, left down,
and started again (its state survives a graceful stop). During the outage the worker's
claims fail with a retriable ``IdempotencyError`` and are retried within each request's
deadline: a call succeeds after the retry or fails with the caller's clear, retriable
``DeadlineExceeded``. A tail of requests after the restart must all succeed. The effect is
the handler run (no fence): ``duplicated`` counts any request run twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from bus.config import BusSettings
from bus.delivery.idempotency import Claim, IdempotencyError, IdempotencyStore
from functions.shared.dynamodb_idempotency import DynamoDBIdempotencyStore
from proof.chaos.load import Load, caller, settle, warm_up
from proof.chaos.runner import Context, ScenarioResult, result_of
from proof.chaos.service import EffectLogs, operation_of
from proof.chaos.stack import (
    CALLER,
    aws_settings,
    idempotency_table_on,
    identities,
    private,
    topics,
)
from proof.chaos.workers import InProcess, running

NAME = "emulator-restart"


@dataclass(frozen=True)
class Sizes:
    count: int
    spacing_s: float
    stop_after: int
    down_s: float
    timeout_s: float
    tail: int
    handler_s: float = 0.02


FAST = Sizes(count=80, spacing_s=0.05, stop_after=20, down_s=1.0, timeout_s=5.0, tail=10)
FULL = Sizes(count=400, spacing_s=0.03, stop_after=100, down_s=6.0, timeout_s=8.0, tail=50)


class CountingStore:
    """An ``IdempotencyStore`` that counts the retriable errors of the one it wraps."""

    def __init__(self, inner: IdempotencyStore) -> None:
        self._inner = inner
        self.errors = 0

    @property
    def max_result_bytes(self) -> int:
        return self._inner.max_result_bytes

    def _count(self, exc: IdempotencyError) -> None:
        if exc.retriable:
            self.errors += 1

    async def begin(self, key: str, *, now_ms: int, lease_ms: int) -> Claim:
        try:
            return await self._inner.begin(key, now_ms=now_ms, lease_ms=lease_ms)
        except IdempotencyError as exc:
            self._count(exc)
            raise

    async def complete(self, key: str, result: bytes, *, token: str, now_ms: int,
                       keep_ms: int) -> bool:
        try:
            return await self._inner.complete(key, result, token=token, now_ms=now_ms,
                                              keep_ms=keep_ms)
        except IdempotencyError as exc:
            self._count(exc)
            raise

    async def release(self, key: str, *, token: str) -> bool:
        try:
            return await self._inner.release(key, token=token)
        except IdempotencyError as exc:
            self._count(exc)
            raise

    async def renew(self, key: str, *, token: str, now_ms: int, lease_ms: int) -> bool:
        try:
            return await self._inner.renew(key, token=token, now_ms=now_ms, lease_ms=lease_ms)
        except IdempotencyError as exc:
            self._count(exc)
            raise


async def run(ctx: Context) -> ScenarioResult:
    size = FAST if ctx.fast else FULL
    service = f"chaosemu{uuid.uuid4().hex[:8]}"
    operation = operation_of(service)
    request_topic = f"{service}.requests"
    mesh = identities(service)
    logs = EffectLogs(ctx.workdir / "runs.log")
    settings = BusSettings(bootstrap_servers=ctx.bootstrap, service_name=service)
    async with private("emulator", ctx.workdir) as emulator:
        aws = aws_settings(emulator.address)
        async with idempotency_table_on(aws) as table, topics(ctx.bootstrap, {request_topic: 3}):
            store = CountingStore(DynamoDBIdempotencyStore(
                table, client_args=aws.aws_client_args()))
            worker = InProcess(settings, mesh[service], logs, store=store,
                               handler_s=size.handler_s)
            async with running([worker]), \
                    caller(ctx.bootstrap, mesh[CALLER], request_topic) as (client, acks):
                await warm_up(client, operation, 20)
                load = Load(client, operation, count=size.count, spacing_s=size.spacing_s,
                            timeout_s=size.timeout_s)
                loading = asyncio.create_task(load.run())
                try:
                    await load.offered(size.stop_after, 60)
                    stopped_at = time.monotonic()
                    stopped = await emulator.stop()
                    await asyncio.sleep(size.down_s)
                    started = await emulator.start()
                    back_at = time.monotonic()
                    await loading
                finally:
                    loading.cancel()
                    await asyncio.wait([loading], timeout=5)
                tail = Load(client, operation, count=size.tail, spacing_s=size.spacing_s,
                            timeout_s=size.timeout_s, first=size.count)
                await tail.run()
                await settle(logs.runs, 1.0, size.timeout_s)
                alive = worker.alive
    calls = [*load.calls.values(), *tail.calls.values()]
    during = [c for c in calls if stopped_at <= c.started <= back_at]
    not_retriable = [f"{c.n}: {c.error}" for c in calls
                     if c.outcome == "clear" and not c.retriable]
    fault = {
        "emulator": emulator.address, "outage_s": round(back_at - stopped_at, 1),
        "stop_rc": stopped.returncode, "start_rc": started.returncode,
        "offered_during_outage": len(during),
        "during_outage_succeeded": sum(1 for c in during if c.outcome == "ok"),
        "during_outage_failed_clear": sum(1 for c in during if c.outcome == "clear"),
        "store_errors_retried": store.errors, "worker": worker.counters(),
        "tail_succeeded": f"{tail.answered()}/{size.tail}",
    }
    problems = []
    if not alive:
        problems.append(f"the worker stopped: {worker.failure!r}")
    if not_retriable:
        problems.append(f"failures that are not retriable: {not_retriable[:5]}")
    if tail.answered() != size.tail:
        problems.append("requests sent once the emulator was back did not all succeed")
    if stopped.returncode != 0 or started.returncode != 0:
        problems.append(f"the emulator script failed: {stopped.output} | {started.output}")
    injected = (stopped.returncode == 0 and started.returncode == 0 and store.errors > 0
                and bool(during))
    return result_of(NAME, [load, tail], acks.acked, logs, fault=fault, injected=injected,
                     problems=problems)
