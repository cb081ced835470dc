"""Per-pair MACs (bus.security.pair_mac): who can make them, who can check them, and the one
property they give up next to signatures (key-compromise impersonation), pinned."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bus.envelope import Envelope, ReplyTo, new_request, now_ms, reply_for
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, SigningKey, UnknownKeyId, VerifyKey, generate_ed25519
from bus.security.pair_mac import (
    MAC_BYTES,
    NotForThisService,
    PairHeader,
    PairKeys,
    is_pair_mac,
    pair_key,
    parse_pair_header,
)
from bus.security.signing import (
    BadSignature,
    MalformedSignature,
    SenderMismatch,
    canonical_bytes,
    verify,
)

TOPIC = "inventory.requests"
KEYS = {name: generate_ed25519(name) for name in ("orders", "inventory", "intruder")}
RING = KeyRing(verify_key for _, verify_key in KEYS.values())


def signing(name: str) -> SigningKey:
    return KEYS[name][0]


def public(name: str) -> VerifyKey:
    return KEYS[name][1]


def pairs(name: str) -> PairKeys:
    return PairKeys([signing(name)])


def request(source: str = "orders", value: bytes = b'{"sku":"a"}') -> Envelope:
    return new_request(source=source, operation="inventory.stock", value=value,
                       reply_to=ReplyTo("mesh.replies", 3), deadline_ms=now_ms() + 5_000)


def sealed(source: str = "orders", to: str = "inventory", *, envelope: Envelope | None = None,
           sender: str | None = None) -> Envelope:
    return pairs(sender or source).seal(envelope or request(source), TOPIC,
                                        signing(sender or source), public(to))


def test_a_pair_mac_opens_at_its_receiver_as_the_senders_key() -> None:
    message = sealed()
    assert is_pair_mac(message.signature)
    assert verify(message, TOPIC, RING, pairs("inventory")) == public("orders")


def test_both_ends_derive_the_same_key_and_each_direction_its_own() -> None:
    def key(own: str, peer: str, *, sending: bool) -> bytes:
        return pair_key(signing(own), public(own).material, public(peer).key_id,
                        public(peer).material, sending=sending)

    orders_to_inventory = key("orders", "inventory", sending=True)
    assert orders_to_inventory == key("inventory", "orders", sending=False)
    assert key("inventory", "orders", sending=True) == key("orders", "inventory", sending=False)
    assert orders_to_inventory != key("inventory", "orders", sending=True)
    assert orders_to_inventory != key("intruder", "inventory", sending=True)


def test_a_pair_mac_is_refused_where_the_receiver_did_not_opt_in() -> None:
    with pytest.raises(BadSignature, match="does not accept"):
        verify(sealed(), TOPIC, RING)


def test_a_changed_message_or_topic_is_refused() -> None:
    message = sealed()
    with pytest.raises(BadSignature):
        verify(message.with_id("0" * 32), TOPIC, RING, pairs("inventory"))
    with pytest.raises(BadSignature):
        verify(message, "orders.requests", RING, pairs("inventory"))


def test_another_services_key_cannot_make_a_message_from_a_third() -> None:
    # The intruder holds its own key: with it, only pairs with the intruder in them.
    honest_source = request("orders")
    own_pair = sealed("orders", envelope=honest_source, sender="intruder")
    with pytest.raises(SenderMismatch):  # a genuine MAC of the intruder, claiming orders
        verify(own_pair, TOPIC, RING, pairs("inventory"))
    header = parse_pair_header(own_pair.signature or "")
    claimed = own_pair.with_signature(PairHeader(public("orders").key_id,
                                                 header.receiver_key_id, header.mac).encode())
    with pytest.raises(BadSignature):  # the intruder's MAC relabelled as orders'
        verify(claimed, TOPIC, RING, pairs("inventory"))


def test_a_mac_for_one_receiver_does_not_open_at_another_nor_reflected() -> None:
    message = sealed("orders", "inventory")
    with pytest.raises(NotForThisService):
        verify(message, TOPIC, RING, pairs("intruder"))
    # Reflected: inventory's MAC to orders presented to orders as orders -> ... is for
    # orders' key, but the direction is bound into the key: inventory -> orders != orders ->
    # inventory, so relabelling the ends fails.
    reply = reply_for(request(), source="inventory", value=b"{}")
    to_orders = pairs("inventory").seal(reply, "mesh.replies", signing("inventory"),
                                        public("orders"))
    header = parse_pair_header(to_orders.signature or "")
    swapped = to_orders.with_signature(PairHeader(header.receiver_key_id, header.sender_key_id,
                                                  header.mac).encode())
    with pytest.raises(BadSignature):
        verify(swapped, "mesh.replies", RING, pairs("inventory"))


def test_an_unknown_sender_key_is_refused_as_unknown() -> None:
    stranger, _ = generate_ed25519("orders")
    message = PairKeys([stranger]).seal(request(), TOPIC, stranger, public("inventory"))
    with pytest.raises(UnknownKeyId):
        verify(message, TOPIC, RING, pairs("inventory"))


@pytest.mark.parametrize("text", [
    "pair-hmac-sha256:a:b",
    "pair-hmac-sha256:a:b:c:d",
    "pair-hmac-sha256:a b:c:" + "A" * 43,
    "pair-hmac-sha256:a:b:" + "A" * 42,
    "pair-hmac-sha256:a:b:" + "A" * 43 + "=",
])
def test_malformed_pair_headers_are_refused_as_malformed(text: str) -> None:
    with pytest.raises(MalformedSignature):
        verify(request().with_signature(text), TOPIC, RING, pairs("inventory"))


def test_a_small_order_peer_key_makes_no_pair_key() -> None:
    # The Edwards identity point: a "public key" whose shared secret is known to everyone.
    identity_point = bytes([1]) + bytes(31)
    with pytest.raises(BadSignature):
        pair_key(signing("inventory"), public("inventory").material, "weak", identity_point,
                 sending=False)


def test_a_rotated_in_key_of_the_receiver_opens_its_macs() -> None:
    old, new = signing("inventory"), generate_ed25519("inventory")[0]
    in_force = [old]
    receiver = PairKeys([old], current=lambda: in_force[0])
    ring = KeyRing([*RING, new.verify_key("inventory")])
    message = pairs("orders").seal(request(), TOPIC, signing("orders"),
                                   new.verify_key("inventory"))
    with pytest.raises(NotForThisService):
        verify(message, TOPIC, ring, receiver)
    in_force[0] = new
    assert verify(message, TOPIC, ring, receiver) == public("orders")


def test_key_compromise_impersonation_is_the_price_and_stays_at_the_key_holder() -> None:
    """Pinned, not a defect: whoever holds inventory's key can make inventory accept a message
    as from orders (it computes K(orders->inventory) from its side). It still cannot make
    any other service accept one as from orders; that is why pair MACs are opt-in per
    receiver (docs/decisions.md)."""
    forged = pair_key(signing("inventory"), public("inventory").material,
                      public("orders").key_id, public("orders").material, sending=False)
    assert forged == pair_key(signing("orders"), public("orders").material,
                              public("inventory").key_id, public("inventory").material,
                              sending=True)
    message = sealed("orders", "intruder", sender="orders")
    with pytest.raises(NotForThisService):
        verify(message, TOPIC, RING, pairs("inventory"))


def test_the_mac_covers_the_canonical_bytes() -> None:
    message = sealed()
    header = parse_pair_header(message.signature or "")
    key = pair_key(signing("orders"), public("orders").material, public("inventory").key_id,
                   public("inventory").material, sending=True)
    expected = hmac.new(key, canonical_bytes(message, TOPIC), hashlib.sha256).digest()
    assert header.mac == expected
    assert len(expected) == MAC_BYTES


def _identity(name: str, ring: KeyRing, pair_mac: list[str]) -> Identity:
    access = AccessPolicy.from_dict({"orders": ["inventory.requests"],
                                     "inventory": ["mesh.replies"]}, pair_mac=pair_mac)
    return Identity(name, signing(name), ring, access)


def test_identity_seals_for_a_receiver_that_opted_in_and_signs_otherwise() -> None:
    opted = _identity("orders", RING, ["inventory"]).outgoing(request(), TOPIC)
    assert is_pair_mac(opted.signature)
    plain = _identity("orders", RING, []).outgoing(request(), TOPIC)
    assert (plain.signature or "").startswith("ed25519:")
    reply = reply_for(request(), source="inventory", value=b"{}")
    to_orders = _identity("inventory", RING, ["orders"]).outgoing(reply, "mesh.replies",
                                                                 to="orders")
    assert is_pair_mac(to_orders.signature)
    unaddressed = _identity("inventory", RING, ["orders"]).outgoing(reply, "mesh.replies")
    assert (unaddressed.signature or "").startswith("ed25519:")


def test_identity_signs_while_the_receiver_rotates_its_key() -> None:
    ring = KeyRing([*RING, generate_ed25519("inventory")[1]])
    message = _identity("orders", ring, ["inventory"]).outgoing(request(), TOPIC)
    assert (message.signature or "").startswith("ed25519:")


def test_the_pair_key_as_docs_wire_format_writes_it_with_another_library() -> None:
    """An independent derivation from docs/wire-format.md §3a (OpenSSL's X25519 through
    ``cryptography``, the Edwards-to-Montgomery map by hand) gives libsodium's pair key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    prime = 2**255 - 19

    def montgomery(ed_public: bytes) -> bytes:
        y = int.from_bytes(ed_public, "little") & ((1 << 255) - 1)
        u = (1 + y) * pow(1 - y, prime - 2, prime) % prime
        return u.to_bytes(32, "little")

    def lp(data: bytes) -> bytes:
        return len(data).to_bytes(8, "big") + data

    sender, receiver = public("orders"), public("inventory")
    scalar = hashlib.sha512(signing("orders").secret).digest()[:32]  # X25519 clamps it
    shared = X25519PrivateKey.from_private_bytes(scalar).exchange(
        X25519PublicKey.from_public_bytes(montgomery(receiver.material)))
    info = (lp(sender.key_id.encode()) + lp(sender.material)
            + lp(receiver.key_id.encode()) + lp(receiver.material))
    prk = hmac.new(b"meshgate-pair-v1", shared, hashlib.sha256).digest()
    expected = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    assert expected == pair_key(signing("orders"), sender.material, receiver.key_id,
                                receiver.material, sending=True)


def test_the_async_recorder_opens_pair_macs_addressed_to_its_service() -> None:
    from bus.config import BusSettings
    from bus.envelope import to_headers
    from bus.transport import Record
    from functions.async_results.recorder import recorder_guard

    access = AccessPolicy.from_dict({"inventory": ["mesh.async.replies"]}, pair_mac=["orders"])
    reply = reply_for(request(), source="inventory", value=b"{}")
    sealed = Identity("inventory", signing("inventory"), RING, access).outgoing(
        reply, "mesh.async.replies", to="orders")
    assert is_pair_mac(sealed.signature)
    record = Record("mesh.async.replies", 0, 0, sealed.value, headers=to_headers(sealed))
    settings = BusSettings(service_name="orders")
    accepting = recorder_guard(Identity("orders", signing("orders"), RING, access), settings)
    assert accepting.admit(record, now_ms()).id == sealed.id
    plain = AccessPolicy.from_dict({"inventory": ["mesh.async.replies"]})
    refusing = recorder_guard(Identity("orders", signing("orders"), RING, plain), settings)
    with pytest.raises(BadSignature):
        refusing.admit(record, now_ms())
