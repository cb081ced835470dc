"""One signature per batch (bus.security.batch_sig, batch_roots, batch_signer): the Merkle
tree against a plain reference of RFC 9162, every message checkable alone, and each way a
batch message must be refused."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import pytest

from bus.envelope import KIND_EVENT, Envelope, ReplyTo, new_request
from bus.security.access import NotAllowed
from bus.security.batch_roots import BatchRoots
from bus.security.batch_sig import (
    BATCH_PREFIX,
    HASH_BYTES,
    MAX_COUNT,
    BatchHeader,
    batch_signatures,
    leaf_hash,
    parse_batch,
    root_for,
    root_message,
    tree,
)
from bus.security.batch_signer import BatchSigner, NoKeyAtFlush, seal_batch
from bus.security.keys import KeyRing, SigningKey, UnknownKeyId, generate_ed25519, hmac_key
from bus.security.signing import (
    BadSignature,
    MalformedSignature,
    SenderMismatch,
    canonical_bytes,
    sign_bytes,
    verify,
)
from tests.support import identities

TOPIC = "orders.events"
NOW = 1_700_000_000_000


def event(number: int, source: str = "orders") -> Envelope:
    return Envelope(id=f"evt-{number:04d}", source=source, type="orders.created",
                    kind=KIND_EVENT, value=b'{"n":%d}' % number, time_ms=NOW + number)


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, written as the RFC reads."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
                          ).digest()


def reference_path(index: int, leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return b""
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return reference_path(index, leaves[:k]) + reference_root(leaves[k:])
    return reference_path(index - k, leaves[k:]) + reference_root(leaves[:k])


def test_tree_is_rfc_9162_for_every_size_and_every_path_leads_to_its_root() -> None:
    for count in range(1, 70):
        leaves = [leaf_hash(b"m%d" % i) for i in range(count)]
        root, paths = tree(leaves)
        assert root == reference_root(leaves)
        for index in range(count):
            assert paths[index] == reference_path(index, leaves)
            assert root_for(leaves[index], index, count, paths[index]) == root


def test_a_path_is_proof_only_for_its_own_position_and_size() -> None:
    leaves = [leaf_hash(b"m%d" % i) for i in range(13)]
    root, paths = tree(leaves)
    assert root_for(leaves[5], 5, 13, paths[5]) == root
    assert root_for(leaves[5], 5, 13, paths[5][:-HASH_BYTES]) is None  # too short
    assert root_for(leaves[5], 5, 13, paths[5] + leaves[0]) is None  # too long
    assert root_for(leaves[5], 5, 13, paths[5][:-1]) is None  # not whole hashes
    assert root_for(leaves[5], 13, 13, paths[5]) is None  # no such index
    assert root_for(leaves[5], 4, 13, paths[5]) != root  # another position
    assert root_for(leaves[6], 5, 13, paths[5]) != root  # another leaf
    # The same path can fold to the same root under another size (5 of 13 and 5 of 14 sit
    # alike in the left subtree of 8): so the signature covers the count with the root.
    assert root_for(leaves[5], 5, 14, paths[5]) == root


def test_a_leaf_hash_cannot_pose_as_a_node() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != tree([left, right])[0]


def header(**changes: object) -> str:
    base = BatchHeader("k1", 2, 5, b"s" * 64, b"p" * 96)
    return dataclasses.replace(base, **changes).encode()  # type: ignore[arg-type]


def test_parse_reads_what_encode_writes() -> None:
    assert parse_batch(header()) == BatchHeader("k1", 2, 5, b"s" * 64, b"p" * 96)


@pytest.mark.parametrize("count", [2, 3, 13, 64])
def test_a_batch_s_signatures_are_each_message_s_header(count: int) -> None:
    _, paths = tree([leaf_hash(bytes([index])) for index in range(count)])
    assert batch_signatures("k1", b"s" * 64, paths) == [
        BatchHeader("k1", index, count, b"s" * 64, path).encode()
        for index, path in enumerate(paths)]


@pytest.mark.parametrize("text", [
    header().replace("2.5", "2.1"),  # a batch of one is signed alone
    header().replace("2.5", f"2.{MAX_COUNT + 1}"),
    header().replace("2.5", "5.5"),
    header().replace("2.5", "02.5"),
    header().replace("2.5", "+2.5"),
    header().replace("2.5", "2.\u0665"),  # ARABIC-INDIC DIGIT FIVE: int() reads it
    header().replace("2.5", "2"),
    header().replace(":k1:", ":k 1:"),
    header(signature=b"s" * 63),
    header(path=b""),
    header(path=b"p" * 95),
    header() + "=",
    header() + ":extra",
    header().replace(BATCH_PREFIX, "ed25519:"),
])
def test_parse_refuses_every_other_spelling(text: str) -> None:
    with pytest.raises(MalformedSignature):
        parse_batch(text)


@pytest.fixture
def keys() -> tuple[SigningKey, KeyRing]:
    signing, verifying = generate_ed25519("orders")
    _, other = generate_ed25519("billing")
    return signing, KeyRing([verifying, other])


def sealed(count: int, key: SigningKey, source: str = "orders") -> list[Envelope]:
    return seal_batch([(event(i, source), TOPIC) for i in range(count)], key)


def test_every_message_of_a_batch_verifies_alone_and_shares_one_signature(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    batch = sealed(9, key)
    headers = [parse_batch(e.signature or "") for e in batch]
    assert {h.signature for h in headers} == {headers[0].signature}
    assert [(h.index, h.count) for h in headers] == [(i, 9) for i in range(9)]
    for envelope in batch:
        assert verify(envelope, TOPIC, ring).service == "orders"  # no cache: alone
    roots = BatchRoots()
    for envelope in batch:
        assert verify(envelope, TOPIC, ring, roots=roots).service == "orders"
    assert len(roots) == 1


def test_a_batch_of_one_is_a_lone_signature(keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    [alone] = sealed(1, key)
    assert (alone.signature or "").startswith("ed25519:")
    verify(alone, TOPIC, ring)


@pytest.mark.parametrize("cached", [False, True])
def test_a_changed_message_is_refused_even_with_its_root_verified(
        keys: tuple[SigningKey, KeyRing], cached: bool) -> None:
    key, ring = keys
    batch = sealed(6, key)
    roots = BatchRoots()
    if cached:
        verify(batch[0], TOPIC, ring, roots=roots)
    tampered = [
        (batch[3]._with(value=b'{"n":999}'), TOPIC),
        (batch[3], "billing.events"),  # moved to another topic
        (batch[3].with_signature(batch[4].signature or ""), TOPIC),  # another's path
        (batch[3]._with(id="evt-9999"), TOPIC),
    ]
    for envelope, topic in tampered:
        with pytest.raises(BadSignature):
            verify(envelope, topic, ring, roots=roots)


def with_root_verified(count: int, key: SigningKey, ring: KeyRing
                       ) -> tuple[list[Envelope], BatchRoots]:
    """A batch whose first message has been admitted, so its root is remembered."""
    batch, roots = sealed(count, key), BatchRoots()
    verify(batch[0], TOPIC, ring, roots=roots)
    return batch, roots


def test_other_signature_bytes_on_a_verified_root_are_checked_in_full(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    batch, roots = with_root_verified(4, key, ring)
    mangled = parse_batch(batch[1].signature or "")
    mangled = dataclasses.replace(mangled, signature=bytes(64))
    with pytest.raises(BadSignature):
        verify(batch[1].with_signature(mangled.encode()), TOPIC, ring, roots=roots)


def test_a_key_removed_from_the_keyring_is_refused_even_with_its_root_cached(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    batch, roots = with_root_verified(3, key, ring)
    ring.remove(key.key_id)
    with pytest.raises(UnknownKeyId):
        verify(batch[1], TOPIC, ring, roots=roots)


def test_a_valid_batch_cannot_speak_for_another_service(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys  # the orders key signs messages that claim to come from billing
    for envelope in sealed(3, key, source="billing"):
        with pytest.raises(SenderMismatch):
            verify(envelope, TOPIC, ring, roots=BatchRoots())


def test_a_root_signed_without_its_count_or_domain_is_refused(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    batch = sealed(4, key)
    first = parse_batch(batch[0].signature or "")
    root = root_for(leaf_hash(canonical_bytes(batch[0], TOPIC)), 0, 4, first.path)
    assert root is not None
    assert sign_bytes(root_message(4, root), key) == first.signature
    for message in (root, root_message(5, root)):  # the bare root; another count
        forged = dataclasses.replace(first, signature=sign_bytes(message, key))
        with pytest.raises(BadSignature):
            verify(batch[0].with_signature(forged.encode()), TOPIC, ring)


def test_an_hmac_key_cannot_sign_a_batch() -> None:
    signing, verifying = hmac_key("orders", b"k" * 32, "hmac-orders")
    ring = KeyRing([verifying])
    leaves = [leaf_hash(canonical_bytes(event(i), TOPIC)) for i in range(2)]
    _, paths = tree(leaves)
    text = BatchHeader(signing.key_id, 1, 2, b"x" * 64, paths[1]).encode()
    with pytest.raises(BadSignature, match="a batch is signed with ed25519"):
        verify(event(1).with_signature(text), TOPIC, ring)


def test_roots_are_bounded_oldest_out(keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    roots = BatchRoots(max_entries=2)
    verifying = ring.get(key.key_id)
    for n in range(3):
        roots.remember(verifying, 2, bytes([n]) * 32, b"s" * 64)
    assert len(roots) == 2
    assert not roots.known(verifying, 2, bytes([0]) * 32, b"s" * 64)
    assert roots.known(verifying, 2, bytes([2]) * 32, b"s" * 64)


class CountingKey:
    """The key in force, counting the signatures made with it."""

    def __init__(self, key: SigningKey) -> None:
        self.key, self.signed = key, 0
        real = key.signer
        assert real is not None
        outer = self

        class Counting:
            def sign(self, message: bytes) -> bytes:
                outer.signed += 1
                assert real is not None
                return real.sign(message)

        self.key = dataclasses.replace(key)
        object.__setattr__(self.key, "signer", Counting())

    def __call__(self) -> SigningKey:
        return self.key


async def test_the_messages_of_one_turn_share_one_signature_in_order(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    counting = CountingKey(key)
    signer = BatchSigner(counting, max_batch=4)
    results = await asyncio.gather(*(signer.seal(event(i), TOPIC) for i in range(10)))
    assert [e.id for e in results] == [event(i).id for i in range(10)]
    assert counting.signed == 3  # 4 + 4 + 2
    assert [parse_batch(e.signature or "").count for e in results] == [4] * 8 + [2] * 2
    roots = BatchRoots()
    for envelope in results:
        verify(envelope, TOPIC, ring, roots=roots)
    assert len(roots) == 3


async def test_a_message_alone_in_its_turn_is_signed_alone(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    counting = CountingKey(key)
    signer = BatchSigner(counting)
    first = await signer.seal(event(1), TOPIC)
    second = await signer.seal(event(2), TOPIC)
    assert counting.signed == 2
    for envelope in (first, second):
        assert (envelope.signature or "").startswith("ed25519:")
        verify(envelope, TOPIC, ring)


async def test_a_cancelled_caller_does_not_stop_the_rest_of_its_batch(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    signer = BatchSigner(lambda: key)
    futures = [signer.seal(event(i), TOPIC) for i in range(3)]
    futures[1].cancel()
    done = [await futures[0], await futures[2]]
    for envelope in done:
        verify(envelope, TOPIC, ring)


async def test_a_failed_signature_reaches_every_caller_of_the_batch(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, _ = keys
    broken = dataclasses.replace(key)

    class Broken:
        def sign(self, message: bytes) -> bytes:
            raise RuntimeError("no signer")

    object.__setattr__(broken, "signer", Broken())
    signer = BatchSigner(lambda: broken)
    results = await asyncio.gather(*(signer.seal(event(i), TOPIC) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)


async def test_a_batch_whose_key_is_gone_at_the_flush_is_refused_not_sent_unsigned(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, _ = keys
    in_force: list[SigningKey | None] = [key]
    signer = BatchSigner(lambda: in_force[0])
    futures = [signer.seal(event(i), TOPIC) for i in range(3)]
    in_force[0] = None  # queued under a key, flushed without one
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(result, NoKeyAtFlush) for result in results)
    assert not any(isinstance(result, Envelope) for result in results)


def test_a_verified_root_spares_the_rest_of_its_batch_the_ed25519_check(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    verifying = ring.get(key.key_id)
    real = verifying.verifier
    assert real is not None
    checks: list[bytes] = []

    class Counting:
        def verify(self, message: bytes, signature: bytes) -> bool:
            checks.append(message)
            assert real is not None
            return real.verify(message, signature)

    object.__setattr__(verifying, "verifier", Counting())
    roots = BatchRoots()
    for envelope in sealed(8, key):
        verify(envelope, TOPIC, ring, roots=roots)
    assert len(checks) == 1
    for envelope in sealed(8, key):  # no cache: each message checked alone
        verify(envelope, TOPIC, ring)
    assert len(checks) == 9


async def test_an_identity_batches_what_it_would_have_signed_and_nothing_else() -> None:
    mesh = identities({"orders": [TOPIC, "billing.requests"], "billing": []},
                      pair_mac=("billing",))
    orders = mesh["orders"]
    ring = orders.keyring
    assert ring is not None
    events = await asyncio.gather(*(orders.outgoing_batched(event(i), TOPIC)
                                    for i in range(5)))
    assert {parse_batch(e.signature or "").count for e in events} == {5}
    for envelope in events:
        verify(envelope, TOPIC, ring)
    # A request to a service that accepts per-pair MACs is sealed for it, not batched.
    request = new_request(source="orders", operation="billing.charge", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=NOW + 5_000,
                          at_ms=NOW)
    sealed = await asyncio.gather(*(orders.outgoing_batched(request, "billing.requests")
                                    for _ in range(3)))
    assert all((e.signature or "").startswith("pair-hmac-sha256:") for e in sealed)
    with pytest.raises(NotAllowed):
        await orders.outgoing_batched(event(9), "payments.events")
    alone = dataclasses.replace(orders, batch_max=1)
    lone = await asyncio.gather(*(alone.outgoing_batched(event(i), TOPIC) for i in range(3)))
    assert all((e.signature or "").startswith("ed25519:") for e in lone)


def test_a_batch_left_on_a_closed_loop_does_not_break_the_next_loop(
        keys: tuple[SigningKey, KeyRing]) -> None:
    key, ring = keys
    signer = BatchSigner(lambda: key)

    async def seal_and_stop() -> None:
        sealing = signer.seal(event(1), TOPIC)
        asyncio.get_running_loop().stop()  # stops before the turn with the flush
        await sealing  # a waiter on the loop that is about to close

    first = asyncio.new_event_loop()
    with pytest.raises(RuntimeError, match="stopped before"):
        first.run_until_complete(seal_and_stop())
    first.close()

    async def seal_again() -> Envelope:
        return await signer.seal(event(2), TOPIC)

    sealed = asyncio.run(seal_again())
    verify(sealed, TOPIC, ring)
    assert (sealed.signature or "").startswith("ed25519:")  # alone: the orphan was dropped
