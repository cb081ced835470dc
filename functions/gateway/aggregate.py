"""Request aggregation: one client call fans out to several operations at once, each under
its own deadline, and the answers are merged into one object by part name.

A failed optional part is reported under ``errors`` (``partial: true``) while the others
are still answered; a failed ``required`` part fails the whole call with that part's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from bus.errors import DeadlineExceeded, MeshError
from bus.policy.edge import AggregatePart
from functions.gateway.problems import mesh_error_status

Call = Callable[[str, float], Awaitable[dict[str, Any]]]
# Past its deadline a part's own call gives up; this margin only catches a call that does not.
_GRACE_S = 0.25


class PartOutcome(NamedTuple):
    result: dict[str, Any] | None = None
    error: MeshError | None = None


async def fan_out(parts: Mapping[str, AggregatePart], call: Call,
                  budget_s: float) -> dict[str, PartOutcome]:
    """Call every part concurrently; each gets ``min(its timeout, budget_s)``. Every task is
    awaited or cancelled before returning."""

    async def one(part: AggregatePart) -> dict[str, Any]:
        timeout_s = min(part.timeout_ms / 1000, budget_s)
        try:
            async with asyncio.timeout(timeout_s + _GRACE_S):
                return await call(part.operation, timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"{part.operation}: no answer in {timeout_s:g}s") from None

    tasks = {name: asyncio.create_task(one(part), name=f"aggregate:{name}")
             for name, part in parts.items()}
    required = {task for name, task in tasks.items() if parts[name].required}
    try:
        pending = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(not task.cancelled() and task.exception() is not None
                   for task in done & required):
                break  # the call fails with that part's error: stop waiting for the others
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.wait(tasks.values())
    outcomes: dict[str, PartOutcome] = {}
    for name, task in tasks.items():
        if task.cancelled():
            outcomes[name] = PartOutcome(error=DeadlineExceeded(f"{name}: not waited for"))
            continue
        error = task.exception()
        if error is None:
            outcomes[name] = PartOutcome(result=task.result())
        elif isinstance(error, MeshError):
            outcomes[name] = PartOutcome(error=error)
        else:
            raise error
    return outcomes


def merged(parts: Mapping[str, AggregatePart],
           outcomes: Mapping[str, PartOutcome]) -> dict[str, Any]:
    """``{"data": {part: result}, "errors": {part: problem}, "partial": bool}``; raises the
    error of the first failed required part."""
    for name, part in parts.items():
        error = outcomes[name].error
        if part.required and error is not None:
            raise error
    data = {name: o.result for name, o in outcomes.items() if o.error is None}
    errors: dict[str, Any] = {}
    for name, outcome in outcomes.items():
        if outcome.error is not None:
            status, reason, detail = mesh_error_status(outcome.error)
            errors[name] = {"status": status, "reason": reason, "detail": detail}
    return {"data": data, "errors": errors, "partial": bool(errors)}
