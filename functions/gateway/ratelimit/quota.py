"""The daily quota of a usage plan: a per-key, per-UTC-day request counter in DynamoDB.

Pure part: :func:`quota_day` (the UTC day of an instant), :func:`seconds_until_reset`
(until the next UTC midnight), :func:`quota_key` (the item's key). Store part:
:class:`DynamoDBQuotaStore`, whose ``consume`` is **one conditional UpdateItem**::

    ADD #count :cost  SET #expires = :expires   IF attribute_not_exists(#count) OR #count <= :max

with ``:max = quota - cost``. DynamoDB applies an UpdateItem atomically, condition included,
so concurrent requests from any number of Lambda instances can never be granted more than
``quota`` in a day: there is no read-modify-write to lose an update in, and no retry loop.
The count lives in the rate-limit table (``.table``; hash key ``bucket``), under keys
``quota:<key id>:<YYYY-MM-DD>`` that cannot collide with token buckets (``route:``, ``key:``,
``user:``). ``expires_at`` is the end of the day plus a margin, so DynamoDB's TTL deletes
yesterday's counters; a missing item is a count of zero.

Exceeding the quota raises :class:`DailyQuotaExceeded`: HTTP 429 with ``Retry-After`` the
seconds until UTC midnight (see docs/decisions.md for why 429, not 403). It is deliberately
*not* a ``RateLimitError``: those mean "the store could not answer", which a gateway may
choose to fail open on; an exhausted quota must never be let through by such a handler.
Store failures raise ``RateLimitError`` (retriable) or ``RateLimitRefused`` (not), as the
token-bucket store does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.errors import FunctionError
from functions.gateway.ratelimit.bucket import (
    HEADER_RETRY_AFTER,
)
from functions.gateway.ratelimit.dynamodb import RateLimitError, RateLimitRefused, wall_clock_ms
from functions.gateway.ratelimit.table import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from functions.shared.dynamodb import ConditionFailed, LazyDynamoDB, translated
from functions.shared.table_resources import table_access

QUOTA_PREFIX = "quota:"
COUNT_ATTRIBUTE = "count"
DAY_MS = 86_400_000
DEFAULT_TTL_MARGIN_S = 3600
# What a function role needs on the rate-limit table to count quotas.
QUOTA_ACTIONS = ("dynamodb:UpdateItem", "dynamodb:GetItem")
HEADER_QUOTA_LIMIT = "X-Quota-Limit"
HEADER_QUOTA_REMAINING = "X-Quota-Remaining"
HEADER_QUOTA_RESET = "X-Quota-Reset"


def quota_day(now_ms: int) -> str:
    """The UTC day of epoch millisecond ``now_ms``, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(now_ms // 1000, UTC).strftime("%Y-%m-%d")


def next_midnight_ms(now_ms: int) -> int:
    """The epoch millisecond at which the UTC day of ``now_ms`` ends."""
    return (now_ms // DAY_MS + 1) * DAY_MS


def seconds_until_reset(now_ms: int) -> int:
    """Whole seconds until the next UTC midnight, rounded up (1 to 86400)."""
    return -(-(next_midnight_ms(now_ms) - now_ms) // 1000)


def quota_key(key_id: str, day: str) -> str:
    """The counter's item key, e.g. ``quota:0123456789abcdef:2025-01-31``."""
    if not key_id or ":" in key_id or "|" in key_id:
        raise ValueError(f"a key id for a quota must be non-empty without ':' or '|': {key_id!r}")
    datetime.strptime(day, "%Y-%m-%d")  # raises ValueError on anything else
    return f"{QUOTA_PREFIX}{key_id}:{day}"


def expires_at_s(now_ms: int, margin_s: int = DEFAULT_TTL_MARGIN_S) -> int:
    """When the counter of ``now_ms``'s day may be deleted (epoch seconds, for the TTL)."""
    return next_midnight_ms(now_ms) // 1000 + margin_s


@dataclass(frozen=True)
class QuotaDecision:
    """A granted request: the day's ``used`` count (this request included) of ``quota``."""

    quota: int
    used: int
    reset_s: int  # seconds until the counter starts again (UTC midnight)

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.used)

    def headers(self) -> dict[str, str]:
        return {HEADER_QUOTA_LIMIT: str(self.quota), HEADER_QUOTA_REMAINING: str(self.remaining),
                HEADER_QUOTA_RESET: str(self.reset_s)}


class DailyQuotaExceeded(FunctionError):
    """The key's daily quota is used up: answer 429 with ``Retry-After: retry_after_s``.

    Retriable, but only after ``retry_after_s`` (the next UTC midnight). Not a
    ``RateLimitError`` on purpose (see the module's docstring)."""

    status = 429
    code = "daily_quota_exceeded"
    retriable = True

    def __init__(self, *, quota: int, retry_after_s: int) -> None:
        super().__init__(f"the daily quota of {quota} requests is used up; it resets at "
                         "00:00 UTC")
        self.quota = quota
        self.retry_after_s = max(1, retry_after_s)

    def headers(self) -> dict[str, str]:
        return {HEADER_RETRY_AFTER: str(self.retry_after_s), HEADER_QUOTA_LIMIT: str(self.quota),
                HEADER_QUOTA_REMAINING: "0", HEADER_QUOTA_RESET: str(self.retry_after_s)}


def quota_access(logical_id: str) -> dict[str, Any]:
    """The IAM statement a function role needs to count quotas in table ``logical_id``."""
    return table_access(logical_id, QUOTA_ACTIONS)


class DynamoDBQuotaStore:
    """Daily counters in the rate-limit table ``table_name`` (``client_args`` as for
    ``DynamoDBRateLimitStore``)."""

    def __init__(
        self,
        table_name: str,
        *,
        client_args: Mapping[str, Any] | None = None,
        ttl_margin_s: int = DEFAULT_TTL_MARGIN_S,
    ) -> None:
        if not table_name:
            raise ValueError("table_name must not be empty")
        self.table_name = table_name
        self.ttl_margin_s = ttl_margin_s
        self._dynamodb = LazyDynamoDB(client_args)

    async def consume(
        self, key_id: str, quota: int, *, now_ms: int | None = None, cost: int = 1
    ) -> QuotaDecision:
        """Count ``cost`` requests of key ``key_id`` against today's ``quota``.

        Raises :class:`DailyQuotaExceeded` when that would go over the quota (nothing is
        counted then), ``RateLimitError`` when the store cannot answer.
        """
        if quota < 1:
            raise ValueError(f"quota must be at least 1, not {quota!r}")
        if not 1 <= cost <= quota:
            raise ValueError(f"cost must be between 1 and the quota {quota}, not {cost!r}")
        at = wall_clock_ms() if now_ms is None else now_ms
        key = quota_key(key_id, quota_day(at))
        used = await asyncio.to_thread(self._add, key, quota, cost, expires_at_s(
            at, self.ttl_margin_s))
        if used is None:
            raise DailyQuotaExceeded(quota=quota, retry_after_s=seconds_until_reset(at))
        return QuotaDecision(quota=quota, used=used, reset_s=seconds_until_reset(at))

    async def used(self, key_id: str, *, now_ms: int | None = None) -> int:
        """How many requests of ``key_id`` have been counted on the day of ``now_ms``."""
        at = wall_clock_ms() if now_ms is None else now_ms
        key = quota_key(key_id, quota_day(at))
        return await asyncio.to_thread(self._read, key)

    def _add(self, key: str, quota: int, cost: int, expires_s: int) -> int | None:
        """The new count, or ``None`` when the condition refused the increment."""
        try:
            with self._errors("count", key):
                answer = self._dynamodb.get().update_item(
                    TableName=self.table_name,
                    Key={KEY_ATTRIBUTE: {"S": key}},
                    UpdateExpression="ADD #count :cost SET #expires = :expires",
                    ConditionExpression="attribute_not_exists(#count) OR #count <= :max",
                    ExpressionAttributeNames={"#count": COUNT_ATTRIBUTE,
                                              "#expires": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":cost": {"N": str(cost)},
                                               ":max": {"N": str(quota - cost)},
                                               ":expires": {"N": str(expires_s)}},
                    ReturnValues="UPDATED_NEW",
                )
        except ConditionFailed:
            return None
        return _count(key, answer.get("Attributes", {}))

    def _read(self, key: str) -> int:
        with self._errors("read", key):
            answer = self._dynamodb.get().get_item(
                TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
            )
        item = answer.get("Item")
        return 0 if item is None else _count(key, item)

    def _errors(self, what: str, key: str) -> AbstractContextManager[None]:
        return translated(f"{what} quota {key!r} in {self.table_name}",
                          retriable=RateLimitError, refused=RateLimitRefused)


def _count(key: str, attributes: Mapping[str, Any]) -> int:
    try:
        return int(attributes[COUNT_ATTRIBUTE]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RateLimitRefused(f"malformed quota counter {key!r}: {exc}") from exc


def day_bounds_ms(day: str) -> tuple[int, int]:
    """The first and the last-plus-one epoch millisecond of UTC day ``day``."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(start.timestamp()) * 1000, int((start + timedelta(days=1)).timestamp()) * 1000
