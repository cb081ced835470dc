"""The idempotency store: pure decision logic, and the behaviour every store must have.

``StoreContract`` holds the behaviour cases once; ``TestMemoryStore`` runs them on the
in-memory store here, and ``tests/integration/test_dynamodb_idempotency.py`` runs the same
cases on DynamoDB in the emulator.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections import Counter
from typing import ClassVar

import pytest

from bus.delivery.idempotency import (
    COMPLETED,
    IN_PROGRESS,
    Claim,
    IdempotencyError,
    IdempotencyRecord,
    IdempotencyRefused,
    IdempotencyStore,
    MemoryIdempotencyStore,
    claim_record,
    completed_record,
    decide,
    expiry_s,
    holds,
    may_complete,
)
from bus.errors import MeshError, is_retriable

T0 = 1_700_000_000_123  # deliberately not a whole second
LEASE_MS = 30_000
KEEP_MS = 3_600_000
RESULT = b'\x00\xff{"order_id": "ord_1"}'


class StoreContract:
    """Behaviour cases for any ``IdempotencyStore``. Subclasses provide a ``store`` fixture
    and may override ``t0`` (the time the cases start at) and ``racers``."""

    racers: ClassVar[int] = 50

    @pytest.fixture
    def key(self) -> str:
        return f"msg-{uuid.uuid4().hex}"

    @pytest.fixture
    def t0(self) -> int:
        return T0

    async def test_first_begin_claims(self, store: IdempotencyStore, key: str, t0: int) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.status == "claimed"
        assert claim.token
        assert claim.lease_until_ms == t0 + LEASE_MS
        assert claim.result is None

    async def test_duplicate_while_in_progress_is_not_claimed(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        first = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        second = await store.begin(key, now_ms=t0 + 1, lease_ms=LEASE_MS)
        assert second == Claim("in_progress", lease_until_ms=first.lease_until_ms)

    async def test_duplicate_after_complete_gets_the_stored_result(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        done = await store.complete(key, RESULT, token=claim.token, now_ms=t0 + 5, keep_ms=KEEP_MS)
        assert done is True
        duplicate = await store.begin(key, now_ms=t0 + 10, lease_ms=LEASE_MS)
        assert duplicate == Claim("completed", result=RESULT)

    async def test_a_result_up_to_the_store_s_limit_is_kept_and_longer_refused(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        """The limit a worker reads (``max_result_bytes``) is the one the store holds to: a
        result of that length comes back whole, one byte more is refused, not retriable."""
        longest = b"\xff" * store.max_result_bytes
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        with pytest.raises(IdempotencyRefused) as refused:
            await store.complete(key, longest + b"x", token=claim.token, now_ms=t0,
                                 keep_ms=KEEP_MS)
        assert refused.value.retriable is False
        assert await store.complete(key, longest, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
        assert await store.begin(key, now_ms=t0 + 1, lease_ms=LEASE_MS) == Claim(
            "completed", result=longest)

    async def test_an_empty_result_is_stored(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        assert await store.complete(key, b"", token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
        assert await store.begin(key, now_ms=t0 + 1, lease_ms=LEASE_MS) == Claim(
            "completed", result=b""
        )

    async def test_keys_are_independent(self, store: IdempotencyStore, key: str, t0: int) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        await store.complete(key, RESULT, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
        other = await store.begin(key + "-other", now_ms=t0, lease_ms=LEASE_MS)
        assert other.status == "claimed"

    async def test_expired_lease_is_taken_over(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        crashed = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        just_before = await store.begin(key, now_ms=t0 + LEASE_MS - 1, lease_ms=LEASE_MS)
        assert just_before.status == "in_progress"
        takeover = await store.begin(key, now_ms=t0 + LEASE_MS, lease_ms=LEASE_MS)
        assert takeover.status == "claimed"
        assert takeover.token not in (None, crashed.token)
        assert takeover.lease_until_ms == t0 + 2 * LEASE_MS

    async def test_a_taken_over_worker_cannot_release_or_overwrite_the_new_claim(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        stale = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        current = await store.begin(key, now_ms=t0 + LEASE_MS, lease_ms=LEASE_MS)
        assert stale.token is not None
        assert current.token is not None
        assert await store.release(key, token=stale.token) is False
        assert (await store.begin(key, now_ms=t0 + LEASE_MS + 1, lease_ms=LEASE_MS)).status == (
            "in_progress"
        )
        late = await store.complete(
            key, b"stale", token=stale.token, now_ms=t0 + LEASE_MS + 2, keep_ms=KEEP_MS
        )
        assert late is False
        assert await store.complete(
            key, RESULT, token=current.token, now_ms=t0 + LEASE_MS + 3, keep_ms=KEEP_MS
        )
        duplicate = await store.begin(key, now_ms=t0 + LEASE_MS + 4, lease_ms=LEASE_MS)
        assert duplicate == Claim("completed", result=RESULT)

    async def test_a_late_complete_is_kept_when_nobody_took_over(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        late = t0 + 2 * LEASE_MS
        assert await store.complete(key, RESULT, token=claim.token, now_ms=late, keep_ms=KEEP_MS)
        duplicate = await store.begin(key, now_ms=late + 1, lease_ms=LEASE_MS)
        assert duplicate == Claim("completed", result=RESULT)

    async def test_release_lets_a_redelivery_claim(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        failed = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert failed.token is not None
        assert await store.release(key, token=failed.token) is True
        redelivery = await store.begin(key, now_ms=t0 + 1, lease_ms=LEASE_MS)
        assert redelivery.status == "claimed"
        assert redelivery.token != failed.token
        assert await store.release(key, token=failed.token) is False

    async def test_release_never_drops_a_completed_record(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        await store.complete(key, RESULT, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
        assert await store.release(key, token=claim.token) is False
        assert await store.complete(
            key, b"again", token=claim.token, now_ms=t0 + 1, keep_ms=KEEP_MS
        ) is False
        duplicate = await store.begin(key, now_ms=t0 + 2, lease_ms=LEASE_MS)
        assert duplicate == Claim("completed", result=RESULT)

    async def test_renew_keeps_a_long_handler_s_claim_past_its_first_lease(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        later = t0 + LEASE_MS - 1
        assert await store.renew(key, token=claim.token, now_ms=later, lease_ms=LEASE_MS)
        # Past the first lease, but inside the renewed one: still held.
        blocked = await store.begin(key, now_ms=t0 + LEASE_MS + 1, lease_ms=LEASE_MS)
        assert blocked == Claim("in_progress", lease_until_ms=later + LEASE_MS)
        assert await store.complete(key, RESULT, token=claim.token, now_ms=later + 2,
                                    keep_ms=KEEP_MS)

    async def test_renew_after_a_takeover_is_refused(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        stale = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert stale.token is not None
        takeover = await store.begin(key, now_ms=t0 + LEASE_MS + 1, lease_ms=LEASE_MS)
        assert takeover.status == "claimed"
        assert not await store.renew(key, token=stale.token, now_ms=t0 + LEASE_MS + 2,
                                     lease_ms=LEASE_MS)
        assert not await store.renew(f"{key}-unknown", token="x", now_ms=t0, lease_ms=LEASE_MS)

    async def test_release_of_an_unknown_key_is_refused(
        self, store: IdempotencyStore, key: str
    ) -> None:
        assert await store.release(key, token="no-such-claim") is False

    async def test_a_completed_record_expires_after_keep_ms(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.token is not None
        await store.complete(key, RESULT, token=claim.token, now_ms=t0, keep_ms=KEEP_MS)
        expires_ms = expiry_s(t0 + KEEP_MS) * 1000
        assert expires_ms >= t0 + KEEP_MS
        before = await store.begin(key, now_ms=expires_ms - 1, lease_ms=LEASE_MS)
        assert before == Claim("completed", result=RESULT)
        after = await store.begin(key, now_ms=expires_ms, lease_ms=LEASE_MS)
        assert after.status == "claimed"
        assert after.result is None

    async def test_concurrent_begins_claim_exactly_once(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        claims = await asyncio.wait_for(
            asyncio.gather(
                *(store.begin(key, now_ms=t0, lease_ms=LEASE_MS) for _ in range(self.racers))
            ),
            timeout=60,
        )
        assert Counter(c.status for c in claims) == {
            "claimed": 1, "in_progress": self.racers - 1
        }

    async def test_concurrent_takeovers_claim_exactly_once(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        after = t0 + LEASE_MS + 1
        claims = await asyncio.wait_for(
            asyncio.gather(
                *(store.begin(key, now_ms=after, lease_ms=LEASE_MS) for _ in range(self.racers))
            ),
            timeout=60,
        )
        assert Counter(c.status for c in claims) == {
            "claimed": 1, "in_progress": self.racers - 1
        }

    async def test_bad_arguments_are_refused_before_any_write(
        self, store: IdempotencyStore, key: str, t0: int
    ) -> None:
        with pytest.raises(ValueError, match="empty"):
            await store.begin("", now_ms=t0, lease_ms=LEASE_MS)
        with pytest.raises(ValueError, match="longer"):
            await store.begin("k" * 1025, now_ms=t0, lease_ms=LEASE_MS)
        with pytest.raises(ValueError, match="lease_ms"):
            await store.begin(key, now_ms=t0, lease_ms=0)
        claim = await store.begin(key, now_ms=t0, lease_ms=LEASE_MS)
        assert claim.status == "claimed"
        assert claim.token is not None
        with pytest.raises(ValueError, match="keep_ms"):
            await store.complete(key, RESULT, token=claim.token, now_ms=t0, keep_ms=0)


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryIdempotencyStore:
        return MemoryIdempotencyStore()

    def test_its_records_leave_the_cyclic_collectors_walks(self) -> None:
        """A worker's store holds up to 100,000 records; kept as plain tuples, one
        collection untracks them, so later full collections do not walk them all."""
        store = MemoryIdempotencyStore()

        async def fill() -> None:
            for index in range(200):
                claim = await store.begin(f"k{index}", now_ms=T0, lease_ms=LEASE_MS)
                assert claim.token is not None
                if index % 2:
                    await store.complete(f"k{index}", RESULT, token=claim.token,
                                         now_ms=T0 + 1, keep_ms=KEEP_MS)

        asyncio.run(fill())
        gc.collect()
        tracked = [key for key, entry in store._records.items() if gc.is_tracked(entry)]
        assert tracked == []
        assert store.record("k1") == IdempotencyRecord(COMPLETED, expiry_s(T0 + 1 + KEEP_MS),
                                                       result=RESULT)
        claimed = store.record("k0")
        assert claimed is not None
        assert (claimed.status, claimed.lease_until_ms) == (IN_PROGRESS, T0 + LEASE_MS)


    async def test_the_results_kept_stay_within_their_byte_budget(self) -> None:
        """Results of 300 bytes in a 1,000-byte budget: the one closest to its expiry leaves
        first (its key could run again, as at max_entries); the count follows the bytes."""
        store = MemoryIdempotencyStore(max_result_bytes=400, max_total_bytes=1_000)
        for index in range(5):
            key = f"k{index}"
            claim = await store.begin(key, now_ms=T0, lease_ms=LEASE_MS)
            assert claim.token is not None
            assert await store.complete(key, bytes([index]) * 300, token=claim.token,
                                        now_ms=T0 + index, keep_ms=KEEP_MS)
            assert store.total_bytes <= 1_000
        assert [store.record(f"k{index}") is not None for index in range(5)] == [
            False, False, True, True, True]
        assert store.total_bytes == 900
        claim = await store.begin("k0", now_ms=T0 + 10, lease_ms=LEASE_MS)
        assert claim.status == "claimed"  # forgotten early: it runs again

    async def test_the_byte_count_follows_every_way_a_record_leaves(self) -> None:
        store = MemoryIdempotencyStore(max_entries=3, max_result_bytes=100,
                                       max_total_bytes=100)
        claims = {}
        for index in range(6):
            key = f"k{index}"
            claim = await store.begin(key, now_ms=T0 + index, lease_ms=LEASE_MS)
            assert claim.token is not None
            claims[key] = claim.token
            if index % 3 == 2:
                assert await store.release(key, token=claim.token)
            else:
                await store.complete(key, b"r" * (15 * index + 10), token=claim.token,
                                     now_ms=T0 + index, keep_ms=1_000)
            kept = [record.result for key in claims
                    if (record := store.record(key)) is not None and record.result]
            assert store.total_bytes == sum(len(result) for result in kept) <= 100
        await store.begin("later", now_ms=T0 + 10_000, lease_ms=LEASE_MS)  # all expired
        assert store.total_bytes == 0


# The pure decision logic.


def _in_progress(lease_until_ms: int = T0 + LEASE_MS) -> IdempotencyRecord:
    return IdempotencyRecord(IN_PROGRESS, expiry_s(lease_until_ms), "tok", lease_until_ms)


def _completed(expires_at_s: int) -> IdempotencyRecord:
    return IdempotencyRecord(COMPLETED, expires_at_s, result=RESULT)


def test_no_record_may_be_claimed() -> None:
    assert decide(None, T0) is None


def test_a_live_lease_is_in_progress_until_it_ends() -> None:
    record = _in_progress()
    assert decide(record, T0) == Claim("in_progress", lease_until_ms=T0 + LEASE_MS)
    assert decide(record, T0 + LEASE_MS - 1) == Claim("in_progress", lease_until_ms=T0 + LEASE_MS)
    assert decide(record, T0 + LEASE_MS) is None


def test_a_completed_record_answers_duplicates_until_it_expires() -> None:
    record = _completed(expires_at_s=1_700_000_100)
    assert decide(record, 1_700_000_099_999) == Claim("completed", result=RESULT)
    assert decide(record, 1_700_000_100_000) is None


def test_an_expired_record_may_be_claimed_whatever_its_lease() -> None:
    odd = IdempotencyRecord(IN_PROGRESS, 1_700_000_000, "tok", lease_until_ms=T0 + 10 * LEASE_MS)
    assert decide(odd, 1_700_000_000_000) is None


def test_expiry_rounds_up_to_whole_seconds() -> None:
    assert expiry_s(1_700_000_000_000) == 1_700_000_000
    assert expiry_s(1_700_000_000_001) == 1_700_000_001
    assert expiry_s(1_700_000_000_999) == 1_700_000_001


def test_record_builders() -> None:
    claim = claim_record("tok", now_ms=T0, lease_ms=LEASE_MS)
    assert claim == IdempotencyRecord(IN_PROGRESS, expiry_s(T0 + LEASE_MS), "tok", T0 + LEASE_MS)
    done = completed_record(RESULT, now_ms=T0, keep_ms=KEEP_MS)
    assert done == IdempotencyRecord(COMPLETED, expiry_s(T0 + KEEP_MS), result=RESULT)
    with pytest.raises(ValueError, match="lease_ms"):
        claim_record("tok", now_ms=T0, lease_ms=-1)
    with pytest.raises(ValueError, match="keep_ms"):
        completed_record(RESULT, now_ms=T0, keep_ms=0)


def test_only_the_current_claim_holds_the_key() -> None:
    record = _in_progress()
    assert holds(record, "tok")
    assert not holds(record, "other")
    assert not holds(None, "tok")
    assert not holds(_completed(1_800_000_000), "tok")
    assert may_complete(record, "tok")
    assert may_complete(None, "tok")
    assert not may_complete(record, "other")
    assert not may_complete(_completed(1_800_000_000), "tok")


def test_store_errors_are_mesh_errors() -> None:
    error = IdempotencyError("store unreachable")
    assert isinstance(error, MeshError)
    assert is_retriable(error)


# Memory store: bounded, whatever the traffic.


async def test_memory_store_forgets_expired_records() -> None:
    store = MemoryIdempotencyStore(max_entries=1_000_000)
    for i in range(100_000):
        now = T0 + i
        claim = await store.begin(f"k{i}", now_ms=now, lease_ms=LEASE_MS)
        assert claim.token is not None
        await store.complete(f"k{i}", b"r", token=claim.token, now_ms=now, keep_ms=1_000)
        # Completed records live at most keep_ms + 999 ms (expiry rounds up to a second).
        assert len(store) <= 2_000
    assert store.index_entries <= 2 * len(store) + 64


async def test_memory_store_stays_within_max_entries_when_time_stands_still() -> None:
    store = MemoryIdempotencyStore(max_entries=1_000)
    for i in range(100_000):
        claim = await store.begin(f"k{i}", now_ms=T0, lease_ms=LEASE_MS)
        assert claim.status == "claimed"
        assert claim.token is not None
        await store.complete(f"k{i}", b"r", token=claim.token, now_ms=T0, keep_ms=KEEP_MS)
        assert len(store) <= 1_000
        assert store.index_entries <= 2 * len(store) + 64
    # Room is made by forgetting the completed records closest to expiry (here: the oldest).
    assert (await store.begin("k99999", now_ms=T0, lease_ms=LEASE_MS)).status == "completed"
    assert (await store.begin("k0", now_ms=T0, lease_ms=LEASE_MS)).status == "claimed"


async def test_memory_store_index_stays_bounded_under_claim_release_churn() -> None:
    store = MemoryIdempotencyStore(max_entries=10)
    for _ in range(100_000):
        claim = await store.begin("k", now_ms=T0, lease_ms=LEASE_MS)
        assert claim.token is not None
        assert await store.release("k", token=claim.token)
    assert len(store) == 0
    assert store.index_entries <= 64


async def test_memory_store_never_drops_a_live_claim_to_make_room() -> None:
    store = MemoryIdempotencyStore(max_entries=3)
    for i in range(3):
        assert (await store.begin(f"k{i}", now_ms=T0, lease_ms=LEASE_MS)).status == "claimed"
    with pytest.raises(IdempotencyError, match="full") as raised:
        await store.begin("k3", now_ms=T0, lease_ms=LEASE_MS)
    assert raised.value.retriable
    assert (await store.begin("k0", now_ms=T0 + 1, lease_ms=LEASE_MS)).status == "in_progress"
    assert (await store.begin("k3", now_ms=T0 + LEASE_MS, lease_ms=LEASE_MS)).status == "claimed"
    assert len(store) == 1


def test_memory_store_needs_room_for_one_record() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryIdempotencyStore(max_entries=0)
