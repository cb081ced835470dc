"""Idempotent handling: each message id is applied once, even when Kafka delivers it twice.

Modelled on AWS Lambda Powertools' idempotency: one record per key, ``IN_PROGRESS`` while a
worker holds a lease on it, ``COMPLETED`` with the handler's result afterwards.

- ``begin`` claims a key that has no record, whose completed record has expired, or whose
  in-progress lease has run out (the worker that held it crashed or stalled). A duplicate
  gets ``completed`` and the stored result, or ``in_progress`` while another lease is live.
- ``complete`` stores the result for ``keep_ms``; ``release`` drops a claim after a
  retriable failure so a redelivery can run the handler again.
- Every claim carries a ``token``. ``complete`` and ``release`` act only while the caller's
  claim is still the current one, so a worker whose lease ran out and was taken over cannot
  release (or overwrite) the claim of the worker that took over. They answer ``False`` then.

A lease only bounds how long a crashed worker blocks a key: a worker that stalls longer than
``lease_ms`` and then finishes may have run the handler alongside the one that took over.
Choose ``lease_ms`` above the handler's deadline.

Pure decision logic (``decide`` and the record builders) is shared by every store; stores
never read a clock (``now_ms`` is passed in). Expiry is kept in whole epoch seconds
(``expires_at_s``, rounded up) because that is what DynamoDB's TTL reads; the lease is in ms.
"""

from __future__ import annotations

import heapq
import uuid
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from bus.errors import MeshError

RecordStatus = Literal["IN_PROGRESS", "COMPLETED"]
IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETED: Final = "COMPLETED"
ClaimStatus = Literal["claimed", "in_progress", "completed"]
MAX_KEY_BYTES = 1024


class IdempotencyError(MeshError):
    """The idempotency store could not be reached or did not answer; retrying may succeed."""

    retriable = True
    code = "idempotency_unavailable"


class IdempotencyRefused(IdempotencyError):
    """The store refused the operation in a way retrying will not fix (no such table, access
    denied, result too large)."""

    retriable = False
    code = "idempotency_refused"


@dataclass(frozen=True)
class Claim:
    """What ``begin`` found.

    - ``claimed``: the caller holds the key; run the handler, then ``complete`` or
      ``release`` with ``token``. ``lease_until_ms`` is when the claim can be taken over.
    - ``in_progress``: another worker holds a live lease until ``lease_until_ms``; do not
      run the handler (redeliver or retry after that time).
    - ``completed``: a duplicate; answer with ``result`` without running the handler.
    """

    status: ClaimStatus
    token: str | None = None
    lease_until_ms: int | None = None
    result: bytes | None = None


@dataclass(frozen=True)
class IdempotencyRecord:
    """One stored record. ``token`` and ``lease_until_ms`` are set while ``IN_PROGRESS``,
    ``result`` once ``COMPLETED``. The record means nothing from ``expires_at_s`` on."""

    status: RecordStatus
    expires_at_s: int
    token: str | None = None
    lease_until_ms: int | None = None
    result: bytes | None = None

    def expires_at_ms(self) -> int:
        return self.expires_at_s * 1000


def check_key(key: str) -> None:
    if not key:
        raise ValueError("idempotency key must not be empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"idempotency key is longer than {MAX_KEY_BYTES} bytes")


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def expiry_s(at_ms: int) -> int:
    """Epoch seconds of ``at_ms``, rounded up, so a record never expires early."""
    return -(-at_ms // 1000)


def is_expired(record: IdempotencyRecord, now_ms: int) -> bool:
    return now_ms >= record.expires_at_ms()


def lease_expired(record: IdempotencyRecord, now_ms: int) -> bool:
    return (
        record.status == IN_PROGRESS
        and record.lease_until_ms is not None
        and now_ms >= record.lease_until_ms
    )


def decide(record: IdempotencyRecord | None, now_ms: int) -> Claim | None:
    """What ``begin`` at ``now_ms`` finds: None when the key may be claimed (no record, the
    record expired, or its in-progress lease ran out), else the answer a duplicate gets."""
    if record is None or is_expired(record, now_ms) or lease_expired(record, now_ms):
        return None
    if record.status == COMPLETED:
        return Claim("completed", result=record.result if record.result is not None else b"")
    return Claim("in_progress", lease_until_ms=record.lease_until_ms)


def claim_record(token: str, *, now_ms: int, lease_ms: int) -> IdempotencyRecord:
    """The in-progress record a claim writes. It expires with its lease: once the lease has
    run out the key is free anyway, so a store may forget the record then."""
    _positive("lease_ms", lease_ms)
    lease_until_ms = now_ms + lease_ms
    return IdempotencyRecord(IN_PROGRESS, expiry_s(lease_until_ms), token, lease_until_ms)


def completed_record(result: bytes, *, now_ms: int, keep_ms: int) -> IdempotencyRecord:
    _positive("keep_ms", keep_ms)
    return IdempotencyRecord(COMPLETED, expiry_s(now_ms + keep_ms), result=bytes(result))


def check_result_size(result: bytes, max_bytes: int) -> None:
    """``IdempotencyRefused`` (not retriable) for a result longer than a store keeps."""
    if len(result) > max_bytes:
        raise IdempotencyRefused(f"a result of {len(result)} bytes is over the {max_bytes} "
                                 "the store keeps")


def holds(record: IdempotencyRecord | None, token: str) -> bool:
    """Whether ``token``'s claim is the current one (what ``release`` requires)."""
    return record is not None and record.status == IN_PROGRESS and record.token == token


def may_complete(record: IdempotencyRecord | None, token: str) -> bool:
    """``complete`` stores the result while the claim is current, or when the record is gone
    (the lease ran out and the store forgot it, and nobody has claimed the key since)."""
    return record is None or holds(record, token)


def new_token() -> str:
    return uuid.uuid4().hex


# The largest result a store keeps for duplicates: what a DynamoDB item (400 KB, its key and
# other attributes included) holds, and the in-memory store's default so both behave alike.
# A longer result is answered once and kept as a marker (bus.delivery.stored_results.NOT_KEPT).
MAX_RESULT_BYTES: Final = 350_000
# The in-memory store's budget for all the results it keeps: a count alone bounds nothing
# when each result may be 350 KB (100,000 of them: 35 GB).
MAX_TOTAL_BYTES: Final = 64 * 1024 * 1024


class IdempotencyStore(Protocol):
    """Where idempotency records live. Each method is atomic with respect to the others, across
    every worker sharing the store."""

    @property
    def max_result_bytes(self) -> int:
        """The longest ``result`` that ``complete`` keeps; a longer one is refused."""
        ...

    async def begin(self, key: str, *, now_ms: int, lease_ms: int) -> Claim:
        """Claim ``key`` for ``lease_ms``, or report the duplicate (see ``Claim``)."""
        ...

    async def complete(
        self, key: str, result: bytes, *, token: str, now_ms: int, keep_ms: int
    ) -> bool:
        """Store ``result`` for ``keep_ms``; False when the claim had been taken over."""
        ...

    async def release(self, key: str, *, token: str) -> bool:
        """Drop the claim so a redelivery can run; False when it was no longer held."""
        ...

    async def renew(self, key: str, *, token: str, now_ms: int, lease_ms: int) -> bool:
        """Extend the claim's lease to ``now_ms + lease_ms`` (a heartbeat while the handler
        runs, so a short lease can outlive a long handler); False when no longer held."""
        ...


# What MemoryIdempotencyStore keeps per key: its version, then IdempotencyRecord's fields.
_Stored = tuple[int, RecordStatus, int, str | None, int | None, bytes | None]


class MemoryIdempotencyStore:
    """In-process store for one worker process and for tests (not shared across processes).

    Bounded: expired records are forgotten as time passes (``now_ms`` of each call), and at
    ``max_entries``, or when a result would take the results kept past ``max_total_bytes``,
    the completed record closest to its expiry is forgotten early to make room (its key could
    then run again). Live in-progress claims are never dropped: when all ``max_entries`` are
    live claims, ``begin`` raises ``IdempotencyError``.

    Not thread-safe; atomic for asyncio tasks on one loop (no method awaits inside).

    A record is kept as a plain tuple of its version and fields (strings, numbers, bytes),
    which the cyclic collector stops tracking: with up to ``max_entries`` records a worker
    would otherwise walk them all in every full collection (measured under load: one every
    second, 15-100 ms each, growing with the store).
    """

    def __init__(self, max_entries: int = 100_000,
                 max_result_bytes: int = MAX_RESULT_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if not 1 <= max_result_bytes <= max_total_bytes:
            raise ValueError(f"need 1 <= max_result_bytes <= max_total_bytes, got "
                             f"{max_result_bytes} and {max_total_bytes}")
        self._max_entries = max_entries
        self._max_result_bytes = max_result_bytes
        self._max_total_bytes = max_total_bytes
        self._total_bytes = 0  # of the results kept
        self._records: dict[str, _Stored] = {}
        # (expires_at_ms, version, key); entries whose version is no longer the key's are stale.
        self._completed: list[tuple[int, int, str]] = []
        self._leases: list[tuple[int, int, str]] = []
        self._version = 0

    def __len__(self) -> int:
        return len(self._records)

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def max_result_bytes(self) -> int:
        return self._max_result_bytes

    @property
    def total_bytes(self) -> int:
        """The results kept, in bytes: at most ``max_total_bytes``."""
        return self._total_bytes

    @property
    def index_entries(self) -> int:
        """Entries of the expiry index, live and stale: at most ``2 * len(self) + 64``."""
        return len(self._completed) + len(self._leases)

    def record(self, key: str) -> IdempotencyRecord | None:
        """The stored record of ``key`` (expired or not), for inspection."""
        entry = self._records.get(key)
        return None if entry is None else IdempotencyRecord(*entry[1:])

    async def begin(self, key: str, *, now_ms: int, lease_ms: int) -> Claim:
        check_key(key)
        self._forget_expired(now_ms)
        duplicate = decide(self.record(key), now_ms)
        if duplicate is not None:
            return duplicate
        token = new_token()
        record = claim_record(token, now_ms=now_ms, lease_ms=lease_ms)
        self._put(key, record)
        return Claim("claimed", token=token, lease_until_ms=record.lease_until_ms)

    async def complete(
        self, key: str, result: bytes, *, token: str, now_ms: int, keep_ms: int
    ) -> bool:
        check_key(key)
        check_result_size(result, self._max_result_bytes)
        record = completed_record(result, now_ms=now_ms, keep_ms=keep_ms)
        self._forget_expired(now_ms)
        if not may_complete(self.record(key), token):
            return False
        self._put(key, record)
        return True

    async def release(self, key: str, *, token: str) -> bool:
        check_key(key)
        if not holds(self.record(key), token):
            return False
        del self._records[key]
        self._compact()
        return True

    async def renew(self, key: str, *, token: str, now_ms: int, lease_ms: int) -> bool:
        check_key(key)
        if not holds(self.record(key), token):
            return False
        self._put(key, claim_record(token, now_ms=now_ms, lease_ms=lease_ms))
        return True

    def _put(self, key: str, record: IdempotencyRecord) -> None:
        # The record replaced leaves first, so making room can never count it out twice.
        replaced = self._records.pop(key, None)
        if replaced is not None:
            self._total_bytes -= _result_bytes(replaced)
        elif len(self._records) >= self._max_entries:
            self._make_room()
        added = len(record.result or b"")
        while self._total_bytes + added > self._max_total_bytes:
            self._make_room()
        self._version += 1
        self._records[key] = (self._version, record.status, record.expires_at_s, record.token,
                              record.lease_until_ms, record.result)
        self._total_bytes += added
        heapq.heappush(self._heap_of(record), (_forget_at_ms(record), self._version, key))
        self._compact()

    def _heap_of(self, record: IdempotencyRecord) -> list[tuple[int, int, str]]:
        return self._completed if record.status == COMPLETED else self._leases

    def _forget_expired(self, now_ms: int) -> None:
        for heap in (self._completed, self._leases):
            while heap and heap[0][0] <= now_ms:
                _, version, key = heapq.heappop(heap)
                self._drop_if_current(key, version)

    def _make_room(self) -> None:
        while self._completed:
            _, version, key = heapq.heappop(self._completed)
            if self._drop_if_current(key, version):
                return
        raise IdempotencyError(
            f"idempotency store full: {len(self._records)} claims in progress"
        )

    def _drop_if_current(self, key: str, version: int) -> bool:
        entry = self._records.get(key)
        if entry is None or entry[0] != version:
            return False
        del self._records[key]
        self._total_bytes -= _result_bytes(entry)
        return True

    def _compact(self) -> None:
        """Rebuild the heaps when stale entries (replaced or released records) dominate, so
        they stay within a constant factor of the live records even if time stands still."""
        if len(self._completed) + len(self._leases) <= 2 * len(self._records) + 64:
            return
        self._completed = []
        self._leases = []
        for key, entry in self._records.items():
            record = IdempotencyRecord(*entry[1:])
            self._heap_of(record).append((_forget_at_ms(record), entry[0], key))
        heapq.heapify(self._completed)
        heapq.heapify(self._leases)


def _result_bytes(entry: _Stored) -> int:
    return len(entry[5] or b"")


def _forget_at_ms(record: IdempotencyRecord) -> int:
    """When a store may forget ``record``: at its expiry, or an in-progress one at the end
    of its lease (the key is free from then on either way)."""
    if record.status == IN_PROGRESS and record.lease_until_ms is not None:
        return min(record.lease_until_ms, record.expires_at_ms())
    return record.expires_at_ms()
