"""bus.traffic.breaker: the circuit breaker's state machine on a fake clock, outlier detection
by failure rate, and the bounded registry of breakers."""

from __future__ import annotations

import pytest

from bus.errors import MeshError, is_retriable
from bus.traffic.breaker import (
    DEFAULT_MAX_DESTINATIONS,
    Breakers,
    BreakerState,
    CircuitBreakerState,
    CircuitOpen,
)
from bus.traffic.model import CircuitBreaker

T0 = 1_000_000
OPEN_MS = 1_000

# Consecutive failures only: the rate rule needs more calls than ever happen.
IN_A_ROW = CircuitBreaker(
    consecutive_failures=3, window=100, min_calls=100, open_ms=OPEN_MS, half_open_calls=2
)


def by_rate(*, window: int, min_calls: int, rate: float) -> CircuitBreaker:
    """Failure rate only: far more failures in a row than the tests make."""
    return CircuitBreaker(
        consecutive_failures=1_000, window=window, min_calls=min_calls,
        failure_rate_percent=rate, open_ms=OPEN_MS,
    )


def state(breaker: CircuitBreakerState) -> BreakerState:
    """The breaker's state, read afresh (mypy would keep ``breaker.state`` narrowed)."""
    return breaker.state


def replay(breaker: CircuitBreakerState, outcomes: str, now_ms: int = T0) -> None:
    """Report one outcome per letter: ``F`` a failure, ``S`` a success."""
    for outcome in outcomes:
        assert breaker.allow(now_ms)
        if outcome == "F":
            breaker.record_failure(now_ms)
        else:
            breaker.record_success(now_ms)


def opened_at(breaker: CircuitBreakerState, now_ms: int) -> CircuitBreakerState:
    """Drive ``breaker`` (config IN_A_ROW) open at ``now_ms``."""
    replay(breaker, "FFF", now_ms)
    assert state(breaker) is BreakerState.OPEN
    return breaker


# --- closed -> open by failures in a row ------------------------------------------------


def test_a_new_breaker_is_closed_and_allows_calls() -> None:
    breaker = CircuitBreakerState(IN_A_ROW)
    assert state(breaker) is BreakerState.CLOSED
    assert all(breaker.allow(T0 + n) for n in range(100))
    assert breaker.reopens_at_ms() is None


def test_opens_on_exactly_the_nth_failure_in_a_row() -> None:
    breaker = CircuitBreakerState(IN_A_ROW)
    replay(breaker, "FF")
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F")
    assert state(breaker) is BreakerState.OPEN
    assert not breaker.allow(T0)


def test_a_success_breaks_the_run_of_failures() -> None:
    breaker = CircuitBreakerState(IN_A_ROW)
    replay(breaker, "FFSFFSFF")
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F")
    assert state(breaker) is BreakerState.OPEN


def test_consecutive_failures_of_one_opens_on_the_first_failure() -> None:
    breaker = CircuitBreakerState(CircuitBreaker(consecutive_failures=1, open_ms=OPEN_MS))
    replay(breaker, "SSS")
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F")
    assert state(breaker) is BreakerState.OPEN


# --- open -> half-open after open_ms ----------------------------------------------------


def test_stays_open_until_exactly_open_ms_have_passed() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    assert breaker.reopens_at_ms() == T0 + OPEN_MS
    assert not breaker.allow(T0)
    assert not breaker.allow(T0 + OPEN_MS - 1)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.allow(T0 + OPEN_MS)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_half_open_allows_exactly_half_open_calls_trials() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    now = T0 + OPEN_MS
    assert [breaker.allow(now) for _ in range(5)] == [True, True, False, False, False]
    assert not breaker.allow(now + OPEN_MS - 1)
    assert breaker.reopens_at_ms() == now + OPEN_MS


@pytest.mark.parametrize("half_open_calls", [1, 3, 7])
def test_half_open_trials_follow_the_config(half_open_calls: int) -> None:
    config = CircuitBreaker(
        consecutive_failures=1, open_ms=OPEN_MS, half_open_calls=half_open_calls
    )
    breaker = CircuitBreakerState(config)
    replay(breaker, "F")
    allowed = [breaker.allow(T0 + OPEN_MS) for _ in range(half_open_calls + 3)]
    assert allowed == [True] * half_open_calls + [False] * 3


def test_a_failed_trial_reopens_for_another_open_ms_from_the_failure() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    trial_at = T0 + OPEN_MS
    assert breaker.allow(trial_at)
    failed_at = trial_at + 250
    breaker.record_failure(failed_at)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.reopens_at_ms() == failed_at + OPEN_MS
    assert not breaker.allow(failed_at + OPEN_MS - 1)
    assert breaker.allow(failed_at + OPEN_MS)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_one_failed_trial_reopens_even_after_other_trials_succeeded() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    now = T0 + OPEN_MS
    assert breaker.allow(now)
    assert breaker.allow(now)
    breaker.record_success(now)
    breaker.record_failure(now)
    assert state(breaker) is BreakerState.OPEN


def test_half_open_calls_successful_trials_close_it() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    now = T0 + OPEN_MS
    assert breaker.allow(now)
    assert breaker.allow(now)
    breaker.record_success(now + 1)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow(now + 1)
    breaker.record_success(now + 2)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow(now + 2)
    assert breaker.reopens_at_ms() is None


def test_closing_starts_a_new_run_of_failures() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    now = T0 + OPEN_MS
    replay(breaker, "SS", now)
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "FF", now)
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F", now)
    assert state(breaker) is BreakerState.OPEN


def test_trials_that_never_report_are_written_off_after_open_ms() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    round_start = T0 + OPEN_MS
    assert breaker.allow(round_start)
    assert breaker.allow(round_start)  # both trials lost: no outcome ever comes
    assert not breaker.allow(round_start + OPEN_MS - 1)
    assert breaker.allow(round_start + OPEN_MS)
    assert breaker.allow(round_start + OPEN_MS)
    assert not breaker.allow(round_start + OPEN_MS)


def test_outcomes_while_open_are_ignored() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    for _ in range(5):
        breaker.record_success(T0 + 1)  # calls allowed before it opened, finishing late
    breaker.record_failure(T0 + 2)
    assert state(breaker) is BreakerState.OPEN
    assert breaker.reopens_at_ms() == T0 + OPEN_MS


def test_outcomes_in_half_open_without_a_trial_outstanding_are_ignored() -> None:
    breaker = opened_at(CircuitBreakerState(IN_A_ROW), T0)
    now = T0 + OPEN_MS
    assert breaker.allow(now)
    breaker.record_success(now)
    breaker.record_success(now)  # a late straggler, not the second trial
    breaker.record_failure(now)  # likewise
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow(now)
    breaker.record_success(now)
    assert state(breaker) is BreakerState.CLOSED


# --- outlier detection by failure rate --------------------------------------------------


def test_opens_on_the_failure_that_brings_the_rate_to_the_threshold() -> None:
    breaker = CircuitBreakerState(by_rate(window=10, min_calls=4, rate=50))
    replay(breaker, "FSS")  # 3 calls: below min_calls
    replay(breaker, "S")  # 1/4 = 25 %
    replay(breaker, "F")  # 2/5 = 40 %
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.observed_failure_rate_percent == 40
    replay(breaker, "F")  # 3/6 = 50 %
    assert state(breaker) is BreakerState.OPEN


def test_the_rate_rule_waits_for_min_calls() -> None:
    breaker = CircuitBreakerState(by_rate(window=10, min_calls=5, rate=50))
    replay(breaker, "FFFF")  # 100 %, but only 4 calls
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F")
    assert state(breaker) is BreakerState.OPEN


def test_the_rate_counts_only_the_last_window_calls() -> None:
    breaker = CircuitBreakerState(by_rate(window=4, min_calls=4, rate=75))
    replay(breaker, "FFSSSS")  # the two failures slid out of the window
    assert breaker.observed_failure_rate_percent == 0
    replay(breaker, "FF")  # S S F F: 50 %
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "F")  # S F F F: 75 %
    assert state(breaker) is BreakerState.OPEN


def test_a_rate_below_the_threshold_never_opens() -> None:
    breaker = CircuitBreakerState(by_rate(window=20, min_calls=10, rate=50))
    replay(breaker, "FSS" * 1_000)  # 33 %, steadily
    assert state(breaker) is BreakerState.CLOSED


def test_closing_resets_the_window() -> None:
    breaker = CircuitBreakerState(by_rate(window=10, min_calls=4, rate=50))
    replay(breaker, "SSSFFF")  # 3/6: opens
    assert state(breaker) is BreakerState.OPEN
    now = T0 + OPEN_MS
    replay(breaker, "S", now)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.observed_failure_rate_percent == 0
    replay(breaker, "FFF", now)  # 3/3 would open on the old window, but only 3 calls now
    assert state(breaker) is BreakerState.CLOSED
    replay(breaker, "S", now)
    replay(breaker, "F", now)  # 4/5 = 80 %
    assert state(breaker) is BreakerState.OPEN


# --- the error --------------------------------------------------------------------------


def test_circuit_open_is_a_retriable_mesh_error_with_the_reopening_time() -> None:
    error = CircuitOpen("orders.create", reopens_at_ms=T0 + OPEN_MS)
    assert isinstance(error, MeshError)
    assert is_retriable(error)
    assert error.code == "circuit_open"
    assert error.reopens_at_ms == T0 + OPEN_MS
    assert "orders.create" in str(error)


# --- the registry -----------------------------------------------------------------------


def test_breakers_are_made_on_first_use_one_per_operation_and_subset() -> None:
    breakers = Breakers(IN_A_ROW)
    assert len(breakers) == 0
    stable = breakers.get("orders.create", "")
    assert breakers.get("orders.create", "") is stable
    assert breakers.get("orders.create", "canary") is not stable
    assert breakers.get("orders.cancel", "") is not stable
    assert len(breakers) == 3
    assert ("orders.create", "canary") in breakers
    assert stable.config == IN_A_ROW


def test_an_open_destination_does_not_affect_the_others() -> None:
    breakers = Breakers(IN_A_ROW)
    opened_at(breakers.get("orders.create", "canary"), T0)
    assert breakers.get("orders.create", "").allow(T0)
    assert not breakers.get("orders.create", "canary").allow(T0)


def test_admit_raises_circuit_open_with_the_reopening_time() -> None:
    breakers = Breakers(IN_A_ROW)
    opened_at(breakers.admit("orders.create", "canary", T0), T0)
    with pytest.raises(CircuitOpen) as caught:
        breakers.admit("orders.create", "canary", T0 + 10)
    assert caught.value.reopens_at_ms == T0 + OPEN_MS
    assert caught.value.retry_after_ms == OPEN_MS - 10
    assert "canary" in caught.value.destination
    assert state(breakers.admit("orders.create", "canary", T0 + OPEN_MS)) is BreakerState.HALF_OPEN


def test_an_operation_may_bring_its_own_config_and_a_changed_config_starts_afresh() -> None:
    breakers = Breakers(IN_A_ROW)
    own = CircuitBreaker(consecutive_failures=1, open_ms=OPEN_MS)
    breaker = breakers.get("orders.create", "", own)
    assert breaker.config == own
    replay(breaker, "F")
    assert breakers.get("orders.create", "", own) is breaker
    reloaded = breakers.get("orders.create", "", IN_A_ROW)
    assert reloaded is not breaker
    assert state(reloaded) is BreakerState.CLOSED


def test_the_registry_forgets_the_least_recently_used_beyond_its_bound() -> None:
    breakers = Breakers(IN_A_ROW, max_destinations=3)
    for operation in ("a.x", "b.x", "c.x"):
        breakers.get(operation, "")
    breakers.get("a.x", "")  # b.x is now the least recently used
    breakers.get("d.x", "")
    assert len(breakers) == 3
    assert ("b.x", "") not in breakers
    assert all((op, "") in breakers for op in ("a.x", "c.x", "d.x"))


def test_the_default_bound_holds_under_many_destinations() -> None:
    breakers = Breakers(IN_A_ROW)
    for n in range(3 * DEFAULT_MAX_DESTINATIONS):
        breakers.get(f"svc{n}.op", "")
    assert len(breakers) == DEFAULT_MAX_DESTINATIONS == 1024
    assert (f"svc{3 * DEFAULT_MAX_DESTINATIONS - 1}.op", "") in breakers
    assert ("svc0.op", "") not in breakers


def test_the_registry_refuses_a_bound_below_one() -> None:
    with pytest.raises(ValueError, match="max_destinations"):
        Breakers(IN_A_ROW, max_destinations=0)
