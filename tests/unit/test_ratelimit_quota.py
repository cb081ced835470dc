"""functions.gateway.ratelimit.quota, the pure part: UTC days, resets, keys, the 429 error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from functions.gateway.ratelimit.dynamodb import RateLimitError
from functions.gateway.ratelimit.quota import (
    DailyQuotaExceeded,
    QuotaDecision,
    day_bounds_ms,
    expires_at_s,
    next_midnight_ms,
    quota_day,
    quota_key,
    seconds_until_reset,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_the_day_is_the_utc_day() -> None:
    assert quota_day(ms("2025-01-31T00:00:00")) == "2025-01-31"
    assert quota_day(ms("2025-01-31T23:59:59.999")) == "2025-01-31"
    assert quota_day(ms("2025-02-01T00:00:00")) == "2025-02-01"
    assert quota_day(ms("2024-12-31T23:59:59.999")) == "2024-12-31"


def test_seconds_until_reset_round_up_and_end_at_midnight() -> None:
    assert seconds_until_reset(ms("2025-01-31T00:00:00")) == 86_400
    assert seconds_until_reset(ms("2025-01-31T23:59:59")) == 1
    assert seconds_until_reset(ms("2025-01-31T23:59:59.999")) == 1  # never 0
    assert seconds_until_reset(ms("2025-01-31T12:00:00.500")) == 43_200
    assert next_midnight_ms(ms("2025-01-31T12:00:00")) == ms("2025-02-01T00:00:00")


def test_day_bounds_agree_with_the_day_key() -> None:
    start, end = day_bounds_ms("2024-02-29")
    assert quota_day(start) == "2024-02-29"
    assert quota_day(end - 1) == "2024-02-29"
    assert quota_day(end) == "2024-03-01"
    assert next_midnight_ms(start) == end


def test_the_counter_expires_after_its_day() -> None:
    now = ms("2025-01-31T08:00:00")
    assert expires_at_s(now, margin_s=0) == ms("2025-02-01T00:00:00") // 1000
    assert expires_at_s(now) > ms("2025-02-01T00:00:00") // 1000


def test_quota_keys_are_distinct_from_bucket_keys() -> None:
    assert quota_key("0123456789abcdef", "2025-01-31") == "quota:0123456789abcdef:2025-01-31"
    for bad_id in ("", "a:b", "a|b"):
        with pytest.raises(ValueError, match="key id"):
            quota_key(bad_id, "2025-01-31")
    with pytest.raises(ValueError, match="does not match format"):
        quota_key("0123456789abcdef", "31/01/2025")


def test_exceeded_is_a_429_with_retry_after_and_not_a_store_error() -> None:
    error = DailyQuotaExceeded(quota=100, retry_after_s=3600)
    assert error.status == 429
    assert error.retriable
    assert error.headers()["Retry-After"] == "3600"
    assert error.headers()["X-Quota-Remaining"] == "0"
    assert "100" in str(error)
    # A handler that fails open on store errors must not let an exhausted quota through.
    assert not isinstance(error, RateLimitError)
    assert DailyQuotaExceeded(quota=1, retry_after_s=0).retry_after_s == 1


def test_decision_headers() -> None:
    decision = QuotaDecision(quota=10, used=4, reset_s=60)
    assert decision.remaining == 6
    assert decision.headers() == {"X-Quota-Limit": "10", "X-Quota-Remaining": "6",
                                  "X-Quota-Reset": "60"}
