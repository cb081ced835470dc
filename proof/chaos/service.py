"""The service every chaos scenario loads: one operation, ``<service>.apply``.

Its handler records the run (``ledger.record_run`` on ``runs``), applies the effect (fenced:
``ledger.apply_once`` on ``ledger``; unfenced: the run line *is* the effect), then waits
``stall_s`` from the payload (default ``handler_s``) and answers ``{"n": n, "by": pid}``.
Effects come before the stall, so a fault during the stall finds the effect already made.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from bus.envelope import Envelope
from bus.service import Payload, Service
from proof.chaos import ledger


@dataclass(frozen=True)
class EffectLogs:
    runs: Path
    ledger: Path | None = None  # set: the effect is idempotent by construction

    @property
    def effects(self) -> Path:
        return self.ledger or self.runs


def operation_of(service: str) -> str:
    return f"{service}.apply"


def chaos_service(name: str, logs: EffectLogs, handler_s: float) -> Service:
    service = Service(name)

    @service.operation(operation_of(name))
    async def apply(payload: Payload, message: Envelope) -> Payload:
        n = int(payload["n"])
        cid = message.correlation_id or message.id
        await asyncio.to_thread(ledger.record_run, logs.runs, cid, n)
        if logs.ledger is not None:
            await asyncio.to_thread(ledger.apply_once, logs.ledger, cid, n)
        await asyncio.sleep(float(payload.get("stall_s", handler_s)))
        return {"n": n, "by": os.getpid()}

    return service
