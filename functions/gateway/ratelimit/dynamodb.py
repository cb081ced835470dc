"""Token buckets shared by every Lambda instance through one DynamoDB table.

Item schema (hash key ``bucket`` S, TTL on ``expires_at``; see ``.table``):

- ``bucket`` (S): the bucket key, e.g. ``route:POST /v1/orders|key:abc`` (``bucket_key``)
- ``tokens_milli`` (N), ``updated_ms`` (N): the ``BucketState`` (see ``.bucket``)
- ``version`` (N): bumped by every write
- ``expires_at`` (N): epoch seconds from which the bucket is certainly full again (plus a
  margin); DynamoDB's TTL then deletes it, and a missing item *is* a full bucket, so deletion
  changes nothing a request can observe.

Concurrency: optimistic, with a version attribute. ``take`` reads the item (consistent read),
computes the decision with the pure ``bucket.take``, and, when it allows the request, writes
the new state with ``PutItem`` conditioned on ``version`` still being the one it read
(``attribute_not_exists`` for a new bucket). If another instance wrote in between, the
condition fails, DynamoDB returns the current item (``ReturnValuesOnConditionCheckFailure``),
and the decision is recomputed from it, at most ``max_attempts`` times. Every grant is
therefore one successful compare-and-swap from the state it was computed on: no two grants
can both consume the same tokens (no lost update), whatever the number of instances.

Why not one ``UpdateItem`` whose condition encodes the refill: update expressions have
``+``/``-`` but neither ``min`` (the burst cap) nor multiplication (elapsed time * rate), so the
refill cannot be computed by DynamoDB itself. The compare-and-swap keeps all arithmetic in
one pure, unit-tested function.

A denial writes nothing: refilling depends on time alone, and the read state already
reflects every grant before it, so denying on it is never wrong.

One call instead of two (issue 15): the store remembers the item it last wrote to a bucket
and starts the next take from it, without reading. When no other instance wrote since (a
per-caller bucket served by one instance), the compare-and-swap succeeds at once; when one
did, it fails and returns the current item, and the take goes on from there as above. A
denial decided on the remembered item is still right: other instances' writes only ever took
tokens, so the bucket holds at most what the remembered item refills to. Under a hammering client
most requests are denials and cost one read, which also keeps conflicts to the requests
that could actually be granted.

boto3 blocks, so each call runs in a thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from functions.errors import FunctionError
from functions.gateway.ratelimit.bucket import BucketState, Decision, Limit, lease, refill, take
from functions.gateway.ratelimit.table import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from functions.shared.dynamodb import ConditionFailed, LazyDynamoDB, translated

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_MAX_KNOWN = 10_000
DEFAULT_TTL_MARGIN_S = 60
CREATE_CONDITION = "attribute_not_exists(#bucket)"
SWAP_CONDITION = "#version = :version"


class RateLimitError(FunctionError):
    """The bucket store could not answer; retrying may succeed."""

    retriable: bool = True
    code = "ratelimit_unavailable"


class RateLimitContention(RateLimitError):
    """The bucket changed under every one of ``max_attempts`` writes (heavy contention)."""

    code = "ratelimit_contention"


class RateLimitRefused(RateLimitError):
    """The store refused in a way retrying will not fix (no such table, access denied, a
    malformed item)."""

    retriable = False
    code = "ratelimit_refused"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class DynamoDBRateLimitStore:
    """Token buckets in the DynamoDB table ``table_name``.

    ``client_args`` go to ``boto3`` (``region_name``, ``endpoint_url``, credentials, a
    botocore ``config``); without them boto3's defaults apply (in Lambda: the function's
    region and role). The client is created on first use, once per store.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client_args: Mapping[str, Any] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        ttl_margin_s: int = DEFAULT_TTL_MARGIN_S,
    ) -> None:
        if not table_name:
            raise ValueError("table_name must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.table_name = table_name
        self.max_attempts = max_attempts
        self.ttl_margin_s = ttl_margin_s
        self._dynamodb = LazyDynamoDB(client_args)
        # What this store last wrote to each bucket: the next take starts from it instead of
        # reading (see the module notes), bounded, oldest forgotten first.
        self._known: dict[str, Mapping[str, Any]] = {}
        self.max_known = DEFAULT_MAX_KNOWN

    def client(self) -> Any:
        """The boto3 DynamoDB client, created on first use."""
        return self._dynamodb.get()

    async def take(
        self, key: str, limit: Limit, *, now_ms: int | None = None, cost: int = 1
    ) -> Decision:
        """Take ``cost`` tokens from bucket ``key`` at ``now_ms`` (default: the wall clock).

        Raises ``RateLimitError`` (``retriable``) when the store cannot decide; whether to
        then allow (fail open) or deny is the caller's policy.
        """
        if not key:
            raise ValueError("key must not be empty")
        at = wall_clock_ms() if now_ms is None else now_ms
        return await asyncio.to_thread(self._take, key, limit, at, cost)

    async def lease(self, key: str, limit: Limit, want: int, *,
                    now_ms: int | None = None) -> tuple[int, Decision]:
        """Take up to ``want`` tokens of bucket ``key`` in one conditional write (a lease for
        ``functions.gateway.ratelimit.leased``): how many were granted (0: denied; nothing
        written), and the decision. Same compare-and-swap, so the same guarantee as ``take``:
        no two leases ever hold the same token."""
        if not key:
            raise ValueError("key must not be empty")
        at = wall_clock_ms() if now_ms is None else now_ms
        return await asyncio.to_thread(self._lease, key, limit, at, want)

    async def peek(self, key: str, limit: Limit, *, now_ms: int | None = None) -> BucketState:
        """The bucket's state at ``now_ms``, without taking anything."""
        at = wall_clock_ms() if now_ms is None else now_ms
        item = await asyncio.to_thread(self._read, key)
        state = from_item(key, item)[0] if item is not None else None
        return refill(state, limit, at)

    def _take(self, key: str, limit: Limit, now_ms: int, cost: int) -> Decision:
        def exactly(state: BucketState | None) -> tuple[int, Decision]:
            decision = take(state, limit, now_ms, cost)
            return (cost if decision.allowed else 0), decision

        return self._swap(key, limit, exactly)[1]

    def _lease(self, key: str, limit: Limit, now_ms: int, want: int) -> tuple[int, Decision]:
        return self._swap(key, limit, lambda state: lease(state, limit, now_ms, want))

    def _swap(self, key: str, limit: Limit,
              decide: Callable[[BucketState | None], tuple[int, Decision]]
              ) -> tuple[int, Decision]:
        """Read the bucket (or start from what this store last wrote to it), ``decide`` on
        it, and write the new state only if the bucket is still the one decided on (retrying
        on a lost race, from the item the failed write returns); a denial writes nothing."""
        item = self._known.get(key)
        if item is None:
            item = self._read(key)
        for attempt in range(self.max_attempts):
            state, version = from_item(key, item) if item is not None else (None, None)
            granted, decision = decide(state)
            if not decision.allowed:
                return granted, decision
            try:
                written = self._write(key, decision.state, limit, version)
                self._known[key] = written
                while len(self._known) > self.max_known:
                    self._known.pop(next(iter(self._known)), None)
                return granted, decision
            except ConditionFailed as failed:
                item = failed.item if failed.item is not None else self._read(key)
            # Spread the losers out a little so they do not collide again in lockstep.
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise RateLimitContention(
            f"bucket {key!r} in {self.table_name} changed {self.max_attempts} times in a row"
        )

    def _write(self, key: str, state: BucketState, limit: Limit,
               version: int | None) -> Mapping[str, Any]:
        """Write ``state`` if the bucket is still at ``version``; the item written."""
        full_at_ms = state.updated_ms + limit.ms_to_gain(
            state.updated_ms, limit.capacity_milli - state.tokens_milli)
        item = to_item(key, state, version=(version or 0) + 1,
                       expires_at_s=-(-full_at_ms // 1000) + self.ttl_margin_s)
        args: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": item,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if version is None:
            args.update(ConditionExpression=CREATE_CONDITION,
                        ExpressionAttributeNames={"#bucket": KEY_ATTRIBUTE})
        else:
            args.update(ConditionExpression=SWAP_CONDITION,
                        ExpressionAttributeNames={"#version": "version"},
                        ExpressionAttributeValues={":version": {"N": str(version)}})
        with self._errors("write", key):
            self.client().put_item(**args)
        return item

    def _read(self, key: str) -> Mapping[str, Any] | None:
        with self._errors("read", key):
            answer = self.client().get_item(
                TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
            )
        item: Mapping[str, Any] | None = answer.get("Item")
        return item

    def _errors(self, what: str, key: str) -> AbstractContextManager[None]:
        return translated(f"{what} bucket {key!r} in {self.table_name}",
                          retriable=RateLimitError, refused=RateLimitRefused)


def to_item(key: str, state: BucketState, *, version: int, expires_at_s: int) -> dict[str, Any]:
    return {
        KEY_ATTRIBUTE: {"S": key},
        "tokens_milli": {"N": str(state.tokens_milli)},
        "updated_ms": {"N": str(state.updated_ms)},
        "version": {"N": str(version)},
        TTL_ATTRIBUTE: {"N": str(expires_at_s)},
    }


def from_item(key: str, item: Mapping[str, Any]) -> tuple[BucketState, int]:
    try:
        state = BucketState(int(item["tokens_milli"]["N"]), int(item["updated_ms"]["N"]))
        return state, int(item["version"]["N"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RateLimitRefused(f"malformed rate-limit bucket {key!r}: {exc}") from exc
