"""Circuit breaking with outlier detection, per destination (operation and subset).

Pure: time is passed in (``now_ms``, any monotonic origin in milliseconds). The caller asks
``allow`` before each call and reports every allowed call's outcome with ``record_success``
or ``record_failure``; what counts as a failure (a timeout, a transport error, a retriable
remote error) is the caller's decision.

States, as in Hystrix and resilience4j:

- closed: every call goes through. One failure more than ``consecutive_failures - 1`` in a
  row, or a failure that brings the failure rate over the last ``window`` calls (once there
  are ``min_calls`` of them) to ``failure_rate_percent``, opens the breaker.
- open: no call goes through until ``open_ms`` after opening; the first ``allow`` from then
  on moves to half-open.
- half_open: ``half_open_calls`` trial calls go through. A failed trial re-opens the breaker
  for another ``open_ms``; ``half_open_calls`` successful trials close it with an empty
  window. Trials that never report back are written off after ``open_ms``, and a new round
  of trials starts, so a lost outcome cannot wedge the breaker half-open.

Outcomes reported while open, or half-open with no trial outstanding, are ignored (calls
allowed before the breaker opened, finishing late).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from enum import StrEnum

from bus.errors import MeshError
from bus.traffic.model import CircuitBreaker

DEFAULT_MAX_DESTINATIONS = 1024


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(MeshError):
    """A call refused because its destination's circuit breaker is open.

    Retriable, but later: the destination may be back once ``reopens_at_ms`` (when the
    breaker lets trial calls through again, on the breaker's clock), ``retry_after_ms`` from
    the refusal, has passed; an event handler's failure goes to a retry topic, an edge
    answers 503 with ``Retry-After``. Not within the refused call: the mesh client fails it
    at once, with no retry, backoff sleep or retry budget spent (the breaker exists to shed
    that load).
    """

    retriable = True
    code = "circuit_open"

    def __init__(self, destination: str, reopens_at_ms: int, *, retry_after_ms: int = 0
                 ) -> None:
        super().__init__(f"the circuit to {destination} is open until {reopens_at_ms}")
        self.destination = destination
        self.reopens_at_ms = reopens_at_ms
        self.retry_after_ms = max(0, retry_after_ms)


class CircuitBreakerState:
    """The breaker of one destination (see the module notes for the rules)."""

    def __init__(self, config: CircuitBreaker) -> None:
        self.config = config
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._outcomes: deque[bool] = deque(maxlen=config.window)  # True: a failure
        self._failures_in_window = 0
        self._opened_at_ms = 0
        self._round_started_ms = 0
        self._trials_started = 0
        self._trials_succeeded = 0

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (open turns half-open only inside ``allow``)."""
        return self._state

    @property
    def observed_failure_rate_percent(self) -> float:
        """The failure rate over the calls in the window (0 when empty)."""
        if not self._outcomes:
            return 0.0
        return self._failures_in_window * 100 / len(self._outcomes)

    def reopens_at_ms(self) -> int | None:
        """When ``allow`` may next say yes while it says no; None while it says yes."""
        if self._state is BreakerState.OPEN:
            return self._opened_at_ms + self.config.open_ms
        if self._state is BreakerState.HALF_OPEN and not self._has_trial_left():
            return self._round_started_ms + self.config.open_ms
        return None

    def allow(self, now_ms: int) -> bool:
        """Whether a call may go to the destination now (a yes in half-open takes a trial)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if now_ms < self._opened_at_ms + self.config.open_ms:
                return False
            self._start_trials(now_ms)
        elif not self._has_trial_left() and now_ms >= self._round_started_ms + self.config.open_ms:
            self._start_trials(now_ms)
        if not self._has_trial_left():
            return False
        self._trials_started += 1
        return True

    def record_success(self, now_ms: int) -> None:
        if self._state is BreakerState.CLOSED:
            self._consecutive_failures = 0
            self._remember(failed=False)
        elif self._state is BreakerState.HALF_OPEN and self._has_trial_outstanding():
            self._trials_succeeded += 1
            if self._trials_succeeded >= self.config.half_open_calls:
                self._close()

    def record_failure(self, now_ms: int) -> None:
        if self._state is BreakerState.CLOSED:
            self._consecutive_failures += 1
            self._remember(failed=True)
            if self._too_many_in_a_row() or self._rate_too_high():
                self._open(now_ms)
        elif self._state is BreakerState.HALF_OPEN and self._has_trial_outstanding():
            self._open(now_ms)

    def _remember(self, *, failed: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._failures_in_window -= 1
        self._outcomes.append(failed)
        self._failures_in_window += failed

    def _too_many_in_a_row(self) -> bool:
        return self._consecutive_failures >= self.config.consecutive_failures

    def _rate_too_high(self) -> bool:
        calls = len(self._outcomes)
        return (
            calls >= self.config.min_calls
            and self._failures_in_window * 100 >= self.config.failure_rate_percent * calls
        )

    def _has_trial_left(self) -> bool:
        return self._trials_started < self.config.half_open_calls

    def _has_trial_outstanding(self) -> bool:
        return self._trials_succeeded < self._trials_started

    def _open(self, now_ms: int) -> None:
        self._state = BreakerState.OPEN
        self._opened_at_ms = now_ms

    def _start_trials(self, now_ms: int) -> None:
        self._state = BreakerState.HALF_OPEN
        self._round_started_ms = now_ms
        self._trials_started = 0
        self._trials_succeeded = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._outcomes.clear()
        self._failures_in_window = 0


class Breakers:
    """The breakers of many destinations, keyed by (operation, subset), made on first use.

    Bounded: beyond ``max_destinations`` the least recently used breaker is forgotten (a
    forgotten breaker starts again closed). ``config`` is the default; ``get`` takes an
    operation's own, and a breaker whose config changed (rules reloaded) starts afresh.
    """

    def __init__(
        self, config: CircuitBreaker, *, max_destinations: int = DEFAULT_MAX_DESTINATIONS
    ) -> None:
        if max_destinations < 1:
            raise ValueError(f"max_destinations must be >= 1, got {max_destinations}")
        self.config = config
        self.max_destinations = max_destinations
        self._states: OrderedDict[tuple[str, str], CircuitBreakerState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, destination: object) -> bool:
        return destination in self._states

    def snapshot(self) -> list[tuple[tuple[str, str], BreakerState]]:
        """(operation, subset) and state of every breaker; safe to call from another thread
        (the copy is one C-level step under the GIL)."""
        return [(key, breaker.state) for key, breaker in list(self._states.items())]

    def get(
        self, operation: str, subset: str, config: CircuitBreaker | None = None
    ) -> CircuitBreakerState:
        wanted = config if config is not None else self.config
        key = (operation, subset)
        state = self._states.get(key)
        if state is None or state.config != wanted:
            state = CircuitBreakerState(wanted)
            self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self.max_destinations:
            self._states.popitem(last=False)
        return state

    def admit(
        self, operation: str, subset: str, now_ms: int, config: CircuitBreaker | None = None
    ) -> CircuitBreakerState:
        """The destination's breaker, once it allowed a call now; else ``CircuitOpen``."""
        state = self.get(operation, subset, config)
        if not state.allow(now_ms):
            reopens = state.reopens_at_ms()
            reopens_at_ms = reopens if reopens is not None else now_ms
            destination = f"{operation} (subset {subset!r})" if subset else operation
            raise CircuitOpen(destination, reopens_at_ms, retry_after_ms=reopens_at_ms - now_ms)
        return state
