"""bus.traffic.faults: delay and abort decisions, and how retry loops treat injected faults."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bus.delivery.retry import Backoff, RetryBudget, call_with_retries
from bus.errors import MeshError, is_retriable
from bus.traffic.faults import NO_FAULT, FaultDecision, InjectedFault, decide_fault
from bus.traffic.model import FaultInjection

DRAWS = 100_000
TOLERANCE_PP = 1.0  # percentage points; one standard deviation is at most 0.16 pp here


def percent(count: int, total: int) -> float:
    return count * 100 / total


def test_no_faults_means_no_fault_and_no_draw() -> None:
    rng = random.Random(1)
    decision = decide_fault(None, rng)
    assert decision == NO_FAULT == FaultDecision()
    assert decision.delay_ms == 0
    assert not decision.aborts
    assert rng.getstate() == random.Random(1).getstate()


@pytest.mark.parametrize(
    "faults",
    [
        FaultInjection(),
        FaultInjection(delay_percent=50, delay_ms=10, abort_percent=50),
        FaultInjection(delay_percent=100, delay_ms=10, abort_percent=100),
    ],
)
def test_rules_take_exactly_two_draws(faults: FaultInjection) -> None:
    rng, reference = random.Random(2), random.Random(2)
    decide_fault(faults, rng)
    reference.random()
    reference.random()
    assert rng.getstate() == reference.getstate()


def test_zero_percents_never_fault() -> None:
    faults = FaultInjection(delay_percent=0, delay_ms=500, abort_percent=0)
    rng = random.Random(3)
    assert {decide_fault(faults, rng) for _ in range(10_000)} == {NO_FAULT}


def test_hundred_percents_always_delay_and_abort_with_the_configured_fault() -> None:
    faults = FaultInjection(
        delay_percent=100, delay_ms=250, abort_percent=100, abort_code="unavailable",
        abort_retriable=False,
    )
    rng = random.Random(4)
    decisions = {decide_fault(faults, rng) for _ in range(10_000)}
    assert decisions == {
        FaultDecision(delay_ms=250, abort_code="unavailable", abort_retriable=False)
    }


def test_delay_and_abort_percents_hold_within_one_point_and_are_independent() -> None:
    faults = FaultInjection(delay_percent=20, delay_ms=100, abort_percent=10)
    rng = random.Random(5)
    kinds = Counter(
        (decision.delay_ms > 0, decision.aborts)
        for decision in (decide_fault(faults, rng) for _ in range(DRAWS))
    )
    delayed = kinds[True, False] + kinds[True, True]
    aborted = kinds[False, True] + kinds[True, True]
    assert abs(percent(delayed, DRAWS) - 20) <= TOLERANCE_PP
    assert abs(percent(aborted, DRAWS) - 10) <= TOLERANCE_PP
    # Independent draws: both happen to 20% x 10% = 2% of calls.
    assert abs(percent(kinds[True, True], DRAWS) - 2) <= 0.3


def test_a_fractional_abort_percent_holds_within_a_tenth_of_a_point() -> None:
    faults = FaultInjection(abort_percent=0.5)
    rng = random.Random(6)
    aborted = sum(decide_fault(faults, rng).aborts for _ in range(DRAWS))
    assert abs(percent(aborted, DRAWS) - 0.5) <= 0.1


def test_an_abort_becomes_an_injected_fault_with_its_code_and_flag() -> None:
    retriable = FaultDecision(abort_code="injected_fault", abort_retriable=True).error("a.b")
    final = FaultDecision(abort_code="bad_gateway", abort_retriable=False).error("a.b")
    assert isinstance(retriable, MeshError)
    assert retriable.code == "injected_fault"
    assert (retriable.fault_code, is_retriable(retriable)) == ("injected_fault", True)
    assert (final.fault_code, is_retriable(final)) == ("bad_gateway", False)
    assert "a.b" in str(final)
    assert str(final).startswith("bad_gateway: ")


def test_a_decision_without_abort_has_no_error() -> None:
    with pytest.raises(ValueError, match="does not abort"):
        FaultDecision(delay_ms=5).error("a.b")


@pytest.mark.parametrize(("abort_retriable", "expected_calls"), [(True, 3), (False, 1)])
async def test_retry_loops_treat_an_injected_fault_per_its_flag(
    abort_retriable: bool, expected_calls: int
) -> None:
    decision = decide_fault(
        FaultInjection(abort_percent=100, abort_retriable=abort_retriable), random.Random(7)
    )
    calls: list[int] = []

    async def call(attempt: int) -> str:
        calls.append(attempt)
        raise decision.error("orders.create")

    async def no_sleep(seconds: float) -> None:
        return None

    with pytest.raises(InjectedFault):
        await call_with_retries(
            call,
            backoff=Backoff(base_s=0.001, cap_s=0.001, max_attempts=3),
            budget=RetryBudget(ratio=0.0, min_retries_per_s=1000.0),
            deadline_ms=10**12,
            now_ms=lambda: 1_000,
            sleep=no_sleep,
            rng=random.Random(8),
        )
    assert calls == list(range(1, expected_calls + 1))
