"""Fault injection on the caller's side: whether this call is delayed, aborted, both or neither.

Pure: the caller passes a ``random.Random`` and applies the decision itself, delay first
(``await asyncio.sleep(decision.delay_ms / 1000)``), then the abort
(``raise decision.error(operation)``), as Istio does when both fire.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from bus.errors import MeshError
from bus.traffic.model import FaultInjection


class InjectedFault(MeshError):
    """A call aborted on purpose by the traffic rules' fault injection.

    Carries the configured code (``fault_code``) and ``retriable`` flag, so retry loops treat
    it like the failure it stands for.
    """

    code = "injected_fault"

    def __init__(self, fault_code: str, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.fault_code = fault_code
        self.retriable = retriable

    def __str__(self) -> str:
        return f"{self.fault_code}: {self.message}"


class FaultDecision(NamedTuple):
    """What fault injection does to one call: wait ``delay_ms`` (0: no delay), then abort
    with ``abort_code`` when it is not None."""

    delay_ms: int = 0
    abort_code: str | None = None
    abort_retriable: bool = False

    @property
    def aborts(self) -> bool:
        return self.abort_code is not None

    def error(self, operation: str) -> InjectedFault:
        """The error to raise for an aborted call to ``operation``."""
        if self.abort_code is None:
            raise ValueError("this decision does not abort the call")
        return InjectedFault(
            self.abort_code,
            f"fault injected into {operation} by the traffic rules",
            retriable=self.abort_retriable,
        )


NO_FAULT = FaultDecision()


def decide_fault(faults: FaultInjection | None, rng: random.Random) -> FaultDecision:
    """Delay ``delay_percent`` and abort ``abort_percent`` of calls, as two independent draws.

    With rules, exactly two draws from ``rng`` (delay, then abort) whatever the percents;
    without (None), none.
    """
    if faults is None:
        return NO_FAULT
    delayed = rng.random() * 100 < faults.delay_percent
    aborted = rng.random() * 100 < faults.abort_percent
    return FaultDecision(
        delay_ms=faults.delay_ms if delayed else 0,
        abort_code=faults.abort_code if aborted else None,
        abort_retriable=faults.abort_retriable if aborted else False,
    )
