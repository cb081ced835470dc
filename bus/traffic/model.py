"""The traffic rules of one operation, as declared in the policies (``traffic:``).

Destinations are *subsets* of the serving service, as in Istio: subset ``""`` is the
service's own request topic ``<service>.requests``; subset ``canary`` is
``<service>.canary.requests``, served by workers of the same service (same identity) started
for that subset.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

SUBSET_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeaderMatch(_Rule):
    """Send calls whose ``header`` equals (or starts with) a value to ``subset``."""

    header: str = Field(min_length=1, max_length=128)
    equals: str | None = None
    prefix: str | None = None
    subset: str = Field(pattern=SUBSET_PATTERN)

    @model_validator(mode="after")
    def _one_test(self) -> HeaderMatch:
        if (self.equals is None) == (self.prefix is None):
            raise ValueError("a header match needs exactly one of 'equals' or 'prefix'")
        return self


class WeightedSubset(_Rule):
    subset: str = Field(default="", pattern=r"^(|[a-z0-9][a-z0-9-]{0,62})$")
    weight: int = Field(ge=0, le=100)


class Mirror(_Rule):
    """Copy ``percent`` of calls to ``subset`` without waiting for (or returning) its answer."""

    subset: str = Field(pattern=SUBSET_PATTERN)
    percent: float = Field(ge=0, le=100)


class FaultInjection(_Rule):
    """Delay and/or abort a share of calls on the caller's side, to test resilience."""

    delay_percent: float = Field(default=0, ge=0, le=100)
    delay_ms: int = Field(default=0, ge=0, le=60_000)
    abort_percent: float = Field(default=0, ge=0, le=100)
    abort_code: str = "injected_fault"
    abort_retriable: bool = True


class RetryPolicy(_Rule):
    max_attempts: int = Field(default=3, ge=1, le=10)
    base_ms: int = Field(default=50, gt=0)
    cap_ms: int = Field(default=2_000, gt=0)


class CircuitBreaker(_Rule):
    """Per destination (operation and subset): open after ``consecutive_failures`` failures
    in a row, or when the failure rate over the last ``window`` calls reaches
    ``failure_rate_percent`` (outlier detection); stay open ``open_ms``, then let
    ``half_open_calls`` trial calls through."""

    consecutive_failures: int = Field(default=5, ge=1)
    failure_rate_percent: float = Field(default=50, gt=0, le=100)
    window: int = Field(default=20, ge=2, le=10_000)
    min_calls: int = Field(default=10, ge=1)
    open_ms: int = Field(default=30_000, gt=0)
    half_open_calls: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _rate_can_fire(self) -> CircuitBreaker:
        if self.min_calls > self.window:
            raise ValueError(f"min_calls ({self.min_calls}) above window ({self.window}): "
                             "the failure-rate rule could never open the circuit")
        return self


class TrafficRules(_Rule):
    """Everything that shapes the calls to one operation (``orders.create``)."""

    match: tuple[HeaderMatch, ...] = ()
    split: tuple[WeightedSubset, ...] = ()
    sticky_header: str | None = None  # same header value, same subset of the split
    mirror: Mirror | None = None
    faults: FaultInjection | None = None
    timeout_ms: int | None = Field(default=None, gt=0, le=900_000)
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreaker | None = None

    @model_validator(mode="after")
    def _weights(self) -> TrafficRules:
        if self.split and sum(s.weight for s in self.split) != 100:
            total = sum(s.weight for s in self.split)
            raise ValueError(f"split weights must sum to 100, they sum to {total}")
        return self
