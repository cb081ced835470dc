"""bus.delivery.retry: full-jitter backoff, the retry budget, and call_with_retries on a fake
clock."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.delivery.retry import WINDOW_SLICES, Backoff, RetryBudget, call_with_retries
from bus.errors import (
    BrokerRefused,
    DeadlineExceeded,
    EnvelopeError,
    MeshError,
    RemoteError,
    TransportError,
    is_retriable,
)

DRAWS = 20_000


class MaxRandom(random.Random):
    """Always draws the top of the range, so every delay is its ceiling."""

    def random(self) -> float:
        return 1.0


@dataclass
class FakeClock:
    ms: int = 1_000_000
    sleeps: list[float] = field(default_factory=list)

    def now_ms(self) -> int:
        return self.ms

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.ms += round(seconds * 1000)


def failing(
    errors: Callable[[int], BaseException | None], calls: list[int], clock: FakeClock,
    cost_ms: int = 0,
) -> Callable[[int], Awaitable[str]]:
    """A call that records its attempt, takes ``cost_ms`` and raises ``errors(attempt)``."""

    async def call(attempt: int) -> str:
        calls.append(attempt)
        clock.ms += cost_ms
        error = errors(attempt)
        if error is not None:
            raise error
        return f"ok on {attempt}"

    return call


def roomy_budget() -> RetryBudget:
    return RetryBudget(ratio=0.0, min_retries_per_s=1000.0, window_s=10.0)


# --- Backoff ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_s", "cap_s", "max_attempts"),
    [(0.0, 1.0, 3), (-1.0, 1.0, 3), (1.0, 0.5, 3), (0.1, float("inf"), 3), (0.1, 1.0, 0)],
)
def test_backoff_rejects_bad_settings(base_s: float, cap_s: float, max_attempts: int) -> None:
    with pytest.raises(ValueError, match=r"base_s|cap_s|max_attempts"):
        Backoff(base_s=base_s, cap_s=cap_s, max_attempts=max_attempts)


def test_ceiling_doubles_from_base_up_to_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0, max_attempts=10)
    ceilings = [backoff.ceiling_s(attempt) for attempt in range(1, 8)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_ceiling_stays_at_cap_for_huge_attempt_numbers() -> None:
    backoff = Backoff(base_s=0.1, cap_s=3.0)
    assert backoff.ceiling_s(10_000) == 3.0


def test_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().delay_s(0, random.Random(1))


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 9])
def test_full_jitter_is_uniform_over_zero_to_ceiling(attempt: int) -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0, max_attempts=10)
    ceiling = backoff.ceiling_s(attempt)
    rng = random.Random(20240601 + attempt)
    draws = [backoff.delay_s(attempt, rng) for _ in range(DRAWS)]
    assert all(0.0 <= d <= ceiling <= backoff.cap_s for d in draws)
    # Uniform over [0, ceiling]: mean c/2, each quarter holds a quarter of the draws,
    # and the extremes are reached (full jitter, not "equal jitter" or a constant).
    assert sum(draws) / DRAWS == pytest.approx(ceiling / 2, rel=0.03)
    for quarter in range(4):
        low, high = quarter * ceiling / 4, (quarter + 1) * ceiling / 4
        share = sum(1 for d in draws if low <= d < high) / DRAWS
        assert share == pytest.approx(0.25, abs=0.02)
    assert min(draws) < 0.01 * ceiling
    assert max(draws) > 0.99 * ceiling


def test_jitter_is_reproducible_with_the_same_seed() -> None:
    backoff = Backoff()
    first = [backoff.delay_s(3, rng) for rng in [random.Random(7)] for _ in range(50)]
    second = [backoff.delay_s(3, rng) for rng in [random.Random(7)] for _ in range(50)]
    assert first == second
    assert len(set(first)) == 50


def test_delay_never_exceeds_ceiling_even_at_the_top_of_the_range() -> None:
    backoff = Backoff(base_s=0.25, cap_s=2.0)
    assert [backoff.delay_s(a, MaxRandom()) for a in (1, 2, 3, 4, 5)] == [
        0.25, 0.5, 1.0, 2.0, 2.0,
    ]


# --- RetryBudget ------------------------------------------------------------------------


def test_budget_floor_is_min_retries_per_second_times_window() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_s=1.0, window_s=10.0)
    assert budget.allowance(0.0) == 10
    assert [budget.try_spend(0.0) for _ in range(11)] == [True] * 10 + [False]
    assert budget.available(0.0) == 0


def test_budget_grows_with_ratio_of_recent_requests() -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_s=0.0, window_s=10.0)
    assert budget.try_spend(0.0) is False
    for i in range(100):
        budget.record_request(i / 100)
    assert budget.allowance(1.0) == 20
    assert sum(budget.try_spend(1.0) for _ in range(30)) == 20
    assert budget.try_spend(1.0) is False


def test_budget_arithmetic_is_exact_for_awkward_floats() -> None:
    budget = RetryBudget(ratio=0.29, min_retries_per_s=0.0, window_s=10.0)
    for _ in range(100):
        budget.record_request(0.0)
    assert 0.29 * 100 < 29  # what float arithmetic gives
    assert budget.allowance(0.0) == 29


def test_requests_and_retries_leave_the_window() -> None:
    budget = RetryBudget(ratio=0.5, min_retries_per_s=0.0, window_s=10.0)
    for _ in range(4):
        budget.record_request(0.0)
    assert budget.try_spend(5.0)
    assert budget.try_spend(5.0)
    assert not budget.try_spend(5.0)
    # At t=10 the requests of t=0 are out of the window: no allowance, spent ones kept.
    assert budget.allowance(10.0) == 0
    budget.record_request(10.0)
    budget.record_request(10.0)
    assert budget.available(10.0) == 0  # 1 allowed, 2 spent at t=5 still in the window
    # At t=15 the retries of t=5 are out too.
    assert budget.available(15.0) == 1
    assert budget.try_spend(15.0)
    assert not budget.try_spend(15.0)


def test_a_refused_spend_takes_nothing() -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_s=0.0, window_s=1.0)
    assert not budget.try_spend(0.0)
    budget.record_request(0.1)
    assert budget.try_spend(0.2)


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"min_retries_per_s": -1.0}, {"window_s": 0.0},
     {"ratio": float("nan")}, {"window_s": float("inf")}],
)
def test_budget_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"ratio|min_retries_per_s|window_s"):
        RetryBudget(**kwargs)


# --- call_with_retries ------------------------------------------------------------------


async def test_success_on_first_attempt_does_not_sleep() -> None:
    clock, calls = FakeClock(), list[int]()
    result = await call_with_retries(
        failing(lambda a: None, calls, clock), backoff=Backoff(), budget=roomy_budget(),
        deadline_ms=clock.ms + 5000, now_ms=clock.now_ms, sleep=clock.sleep,
        rng=random.Random(1),
    )
    assert result == "ok on 1"
    assert calls == [1]
    assert clock.sleeps == []


async def test_retries_retriable_errors_with_attempt_numbers_and_jittered_sleeps() -> None:
    clock, calls = FakeClock(), list[int]()
    backoff = Backoff(base_s=0.1, cap_s=1.0, max_attempts=5)
    seen: list[tuple[int, str, float]] = []
    result = await call_with_retries(
        failing(lambda a: TransportError(f"down {a}") if a < 4 else None, calls, clock),
        backoff=backoff, budget=roomy_budget(), deadline_ms=clock.ms + 60_000,
        now_ms=clock.now_ms, sleep=clock.sleep, rng=random.Random(3),
        on_retry=lambda attempt, error, delay: seen.append((attempt, str(error), delay)),
    )
    assert result == "ok on 4"
    assert calls == [1, 2, 3, 4]
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= backoff.ceiling_s(i + 1) for i, s in enumerate(clock.sleeps))
    assert seen == [(i + 1, f"down {i + 1}", s) for i, s in enumerate(clock.sleeps)]


@pytest.mark.parametrize(
    "error",
    [
        EnvelopeError("bad"),
        BrokerRefused("no such topic"),
        RemoteError("out_of_stock", "none", retriable=False),
        ValueError("a bug"),
    ],
)
async def test_non_retriable_errors_propagate_at_once(error: Exception) -> None:
    clock, calls = FakeClock(), list[int]()
    with pytest.raises(type(error)) as raised:
        await call_with_retries(
            failing(lambda a: error, calls, clock), backoff=Backoff(max_attempts=5),
            budget=roomy_budget(), deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms,
            sleep=clock.sleep, rng=random.Random(1),
        )
    assert raised.value is error
    assert calls == [1]
    assert clock.sleeps == []


async def test_remote_errors_follow_their_own_retriable_flag() -> None:
    clock, calls = FakeClock(), list[int]()
    result = await call_with_retries(
        failing(lambda a: RemoteError("busy", "later", retriable=True) if a == 1 else None,
                calls, clock),
        backoff=Backoff(), budget=roomy_budget(), deadline_ms=clock.ms + 60_000,
        now_ms=clock.now_ms, sleep=clock.sleep, rng=random.Random(1),
    )
    assert result == "ok on 2"
    assert calls == [1, 2]


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock, calls = FakeClock(), list[int]()
    with pytest.raises(TransportError, match="down 3"):
        await call_with_retries(
            failing(lambda a: TransportError(f"down {a}"), calls, clock),
            backoff=Backoff(max_attempts=3), budget=roomy_budget(),
            deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms, sleep=clock.sleep,
            rng=random.Random(1),
        )
    assert calls == [1, 2, 3]
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("cost_ms", "deadline_after_ms", "expected_calls"),
    [
        (0, 2500, [1, 2, 3]),  # fails at 0, 1000, 2000; 2000 + 1000 crosses 2500
        (0, 2000, [1, 2]),  # 1000 + 1000 lands exactly on the deadline: too late
        (700, 3500, [1, 2, 3]),  # calls take 700: fail at 700, 2400 (+1000 fits), 4100
        (700, 3300, [1, 2]),  # ... and 2400 + 1000 crosses 3300
        (0, 999, [1]),  # not even one retry fits
    ],
)
async def test_never_sleeps_past_the_deadline(
    cost_ms: int, deadline_after_ms: int, expected_calls: list[int]
) -> None:
    clock, calls = FakeClock(), list[int]()
    deadline = clock.ms + deadline_after_ms
    with pytest.raises(DeadlineExceeded, match=f"late {len(expected_calls)}$"):
        await call_with_retries(
            failing(lambda a: DeadlineExceeded(f"late {a}"), calls, clock, cost_ms=cost_ms),
            backoff=Backoff(base_s=1.0, cap_s=1.0, max_attempts=50), budget=roomy_budget(),
            deadline_ms=deadline, now_ms=clock.now_ms, sleep=clock.sleep, rng=MaxRandom(),
        )
    assert calls == expected_calls
    assert clock.sleeps == [1.0] * (len(expected_calls) - 1)
    assert clock.ms - cost_ms < deadline  # the last call started before the deadline


async def test_a_passed_deadline_means_no_call_at_all() -> None:
    clock, calls = FakeClock(), list[int]()
    with pytest.raises(DeadlineExceeded, match="before the call"):
        await call_with_retries(
            failing(lambda a: None, calls, clock), backoff=Backoff(), budget=roomy_budget(),
            deadline_ms=clock.ms, now_ms=clock.now_ms, sleep=clock.sleep,
            rng=random.Random(1),
        )
    assert calls == []


async def test_stops_when_the_budget_is_exhausted() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=0.2, window_s=10.0)  # 2 retries / 10 s

    async def run() -> list[int]:
        calls: list[int] = []
        with pytest.raises(TransportError, match=r"down \d$"):
            await call_with_retries(
                failing(lambda a: TransportError(f"down {a}"), calls, clock),
                backoff=Backoff(base_s=0.001, cap_s=0.001, max_attempts=10), budget=budget,
                deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms, sleep=clock.sleep,
                rng=random.Random(5),
            )
        return calls

    assert await run() == [1, 2, 3]
    assert budget.available(clock.ms / 1000) == 0
    assert await run() == [1]  # a second call gets no retry at all
    clock.ms += 10_000  # the spent retries leave the window
    assert await run() == [1, 2, 3]


async def test_each_call_records_one_request_in_the_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_retries_per_s=0.0, window_s=60.0)  # 1 retry / request
    for _ in range(3):
        calls: list[int] = []
        with pytest.raises(TransportError):
            await call_with_retries(
                failing(lambda a: TransportError("down"), calls, clock),
                backoff=Backoff(base_s=0.001, cap_s=0.001, max_attempts=10), budget=budget,
                deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms, sleep=clock.sleep,
                rng=random.Random(2),
            )
        assert calls == [1, 2]


async def test_cancellation_is_not_retried() -> None:
    clock, calls = FakeClock(), list[int]()

    class Stop(BaseException):
        pass

    with pytest.raises(Stop):
        await call_with_retries(
            failing(lambda a: Stop(), calls, clock), backoff=Backoff(max_attempts=5),
            budget=roomy_budget(), deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms,
            sleep=clock.sleep, rng=random.Random(1),
        )
    assert calls == [1]


def test_mesh_errors_used_here_have_the_expected_flags() -> None:
    # The tests above rely on these flags; fail loudly if errors.py changes them.
    errors = [TransportError("x"), DeadlineExceeded("x"), BrokerRefused("x"), MeshError("x")]
    assert [is_retriable(error) for error in errors] == [True, True, False, False]


# --- open circuits: retriable later, never within the call -------------------------------


class Refused(TransportError):
    """Stands for ``CircuitOpen``: retriable, but not within the refused call."""


async def test_fail_fast_errors_are_not_retried_and_spend_nothing() -> None:
    clock, calls = FakeClock(), list[int]()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=1.0, window_s=10.0)
    with pytest.raises(Refused):
        await call_with_retries(
            failing(lambda a: Refused("open"), calls, clock), backoff=Backoff(max_attempts=4),
            budget=budget, deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms,
            sleep=clock.sleep, rng=MaxRandom(), fail_fast=(Refused,),
        )
    assert calls == [1]
    assert clock.sleeps == []
    assert budget.available(clock.ms / 1000) == 10  # the whole floor is left


async def test_without_fail_fast_the_same_error_waits_the_schedule() -> None:
    # The control: what an open circuit cost before it failed fast (3 sleeps, 3 units).
    clock, calls = FakeClock(), list[int]()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=1.0, window_s=10.0)
    with pytest.raises(Refused):
        await call_with_retries(
            failing(lambda a: Refused("open"), calls, clock), backoff=Backoff(max_attempts=4),
            budget=budget, deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms,
            sleep=clock.sleep, rng=MaxRandom(),
        )
    assert calls == [1, 2, 3, 4]
    assert clock.sleeps == [0.05, 0.1, 0.2]
    assert budget.available(clock.ms / 1000) == 7


async def test_a_retry_the_destination_would_still_refuse_is_not_made() -> None:
    clock, calls = FakeClock(), list[int]()
    budget = RetryBudget(ratio=0.0, min_retries_per_s=1.0, window_s=10.0)
    blocked = clock.ms + 30_000  # e.g. the first failure opened the circuit for 30 s
    with pytest.raises(TransportError, match="down 1"):
        await call_with_retries(
            failing(lambda a: TransportError(f"down {a}"), calls, clock),
            backoff=Backoff(max_attempts=4), budget=budget, deadline_ms=clock.ms + 60_000,
            now_ms=clock.now_ms, sleep=clock.sleep, rng=MaxRandom(),
            blocked_until_ms=lambda: blocked,
        )
    assert calls == [1]  # the real failure is raised, not a retry refused by the breaker
    assert clock.sleeps == []
    assert budget.available(clock.ms / 1000) == 10


async def test_a_retry_that_runs_after_the_block_ends_is_made() -> None:
    clock, calls = FakeClock(), list[int]()
    reply = await call_with_retries(
        failing(lambda a: TransportError("down") if a == 1 else None, calls, clock),
        backoff=Backoff(base_s=0.05, max_attempts=4), budget=roomy_budget(),
        deadline_ms=clock.ms + 60_000, now_ms=clock.now_ms, sleep=clock.sleep,
        rng=MaxRandom(), blocked_until_ms=lambda: clock.ms + 50,  # free again after the sleep
    )
    assert (reply, calls, clock.sleeps) == ("ok on 2", [1, 2], [0.05])


def test_the_budget_s_memory_is_bounded_at_any_request_rate() -> None:
    """One float per request was ~100,000 live objects in a worker at 4.5k requests/s; the
    window is now counted per slice (WINDOW_SLICES of it)."""
    budget = RetryBudget(ratio=0.1, min_retries_per_s=0.0, window_s=10.0)
    for i in range(300_000):  # 30 s at 10,000 requests/s, a retry every 50th request
        now = i / 10_000
        budget.record_request(now)
        if i % 50 == 0:
            budget.try_spend(now)
    assert budget.held() <= 2 * (WINDOW_SLICES + 1)
    assert budget.allowance(29.9999) == 10_000  # 0.1 of the window's 100,000 requests


@given(st.lists(st.tuples(st.floats(0.0, 0.05), st.booleans()), min_size=1, max_size=400),
       st.floats(0.001, 5.0))
def test_sliced_counts_differ_from_exact_ones_only_within_one_slice_of_the_edge(
    steps: list[tuple[float, bool]], window_s: float,
) -> None:
    """Against the exact rule (an event at t counts while t > now - window_s): every event
    well inside the window counts, none outside it does."""
    budget = RetryBudget(ratio=1.0, min_retries_per_s=0.0, window_s=window_s)
    slice_s = window_s / WINDOW_SLICES
    now, times = 0.0, []
    for gap, record in steps:
        now += gap
        if record:
            budget.record_request(now)
            times.append(now)
        counted = budget.allowance(now)
        assert counted <= sum(1 for t in times if t > now - window_s)
        assert counted >= sum(1 for t in times if t > now - window_s + 2 * slice_s)
