"""Loading a service's identity, the access map, and the inbound checks' order."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import ReplyTo, new_request, now_ms, to_headers
from bus.security.access import AccessPolicy, NotAllowed
from bus.security.identity import Identity, IdentityError, load_identity
from bus.security.inbound import InboundGuard, Oversized, base_topic, guard_for
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.replay import ReplayedMessage
from bus.security.signing import BadSignature, StaleMessage
from bus.transport import Record

KEY, VERIFY = generate_ed25519("orders")
KEYRING = json.dumps(KeyRing([VERIFY]).to_dict())
ACCESS = json.dumps({"produce": {"orders": ["mesh.replies"]}})


class Secrets:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    def get(self, name: str) -> bytes:
        return self.values[name]


def test_identity_from_environment_variables() -> None:
    settings = BusSettings(service_name="orders", keyring_json=KEYRING, access_json=ACCESS)
    env = {"MESH_SIGNING_KEY": base64.b64encode(KEY.secret).decode()}
    identity = load_identity(settings, env=env)
    assert identity.signing_key is not None
    assert identity.signing_key.key_id == KEY.key_id
    assert identity.keyring is not None
    assert VERIFY.key_id in identity.keyring
    assert identity.access.may_produce("orders", "mesh.replies")
    assert not identity.access.may_produce("orders", "orders.requests")


def test_identity_from_files_and_a_secret_source(tmp_path: Path) -> None:
    (tmp_path / "keyring.json").write_text(KEYRING)
    (tmp_path / "access.json").write_text(ACCESS)
    settings = BusSettings(service_name="orders", signing_key_secret="orders/key",
                           keyring_file=str(tmp_path / "keyring.json"),
                           access_file=str(tmp_path / "access.json"))
    identity = load_identity(settings, env={}, secrets=Secrets({"orders/key": KEY.secret}))
    assert identity.signing_key == KEY


def test_missing_parts_are_named_and_refused() -> None:
    with pytest.raises(IdentityError) as raised:
        load_identity(BusSettings(service_name="orders"), env={})
    message = str(raised.value)
    assert "a signing key" in message
    assert "a keyring" in message
    assert "an access map" in message
    assert "MESH_INSECURE=1" in message


def test_a_secret_name_without_a_secret_source_is_refused() -> None:
    settings = BusSettings(service_name="orders", signing_key_secret="x", keyring_json=KEYRING,
                           access_json=ACCESS)
    with pytest.raises(IdentityError):
        load_identity(settings, env={})


def test_unreadable_keyring_is_an_identity_error(tmp_path: Path) -> None:
    settings = BusSettings(service_name="orders", keyring_file=str(tmp_path / "nope.json"))
    with pytest.raises(IdentityError):
        load_identity(settings, env={"MESH_SIGNING_KEY": base64.b64encode(KEY.secret).decode()})


def test_insecure_is_explicit() -> None:
    identity = load_identity(BusSettings(service_name="orders", insecure=True), env={})
    assert identity.signing_key is None
    assert identity.keyring is None
    assert identity.access.may_produce("orders", "anything")


def test_outgoing_checks_access_before_signing() -> None:
    identity = Identity("orders", KEY, KeyRing([VERIFY]), AccessPolicy.from_dict(
        {"orders": ["mesh.*"]}))
    request = new_request(source="orders", operation="x.y", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 1000)
    assert identity.outgoing(request, "mesh.replies").signature is not None
    with pytest.raises(NotAllowed):
        identity.outgoing(request, "orders.requests")


@pytest.mark.parametrize(
    ("topic", "base"),
    [("orders.requests", "orders.requests"), ("orders.requests.retry.2", "orders.requests"),
     ("a.events.dlt", "a.events"), ("retry.1", "retry.1"), ("x.retry.y", "x.retry.y")],
)
def test_base_topic_comes_from_the_name(topic: str, base: str) -> None:
    assert base_topic(topic) == base


def guard(retry_allowance_ms: int = 0) -> InboundGuard:
    settings = BusSettings(service_name="x", freshness_window_ms=60_000, max_message_bytes=100)
    return guard_for(Identity("x", None, KeyRing([VERIFY]), AccessPolicy.from_dict(
        {"orders": ["orders.events"]})), settings, retry_allowance_ms=retry_allowance_ms)


def record(topic: str, value: bytes, at_ms: int | None = None) -> Record:
    envelope = new_request(source="orders", operation="o.p", value=value,
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 1000,
                           at_ms=at_ms)
    sealed = Identity("orders", KEY, None, AccessPolicy.open()).outgoing(
        envelope, "orders.events")
    return Record(topic, 0, 0, sealed.value, None, to_headers(sealed))


def test_guard_admits_then_refuses_the_replay() -> None:
    check = guard()
    good = record("orders.events", b"{}")
    assert check.admit(good, now_ms()).source == "orders"
    check.admit(good, now_ms())  # the same record delivered again (a rebalance): admitted
    copy = replace(good, offset=good.offset + 1)  # written again: a replay
    with pytest.raises(ReplayedMessage):
        check.admit(copy, now_ms())


def test_guard_checks_size_before_parsing_and_binds_the_topic() -> None:
    with pytest.raises(Oversized):
        guard().admit(Record("orders.events", 0, 0, b"x" * 101, None, ()), now_ms())
    moved = record("orders.events", b"{}")
    with pytest.raises(BadSignature):
        guard().admit(Record("other.events", 0, 0, moved.value, None, moved.headers), now_ms())


def test_retry_topics_verify_against_their_base_and_get_a_wider_window() -> None:
    old = record("orders.events.retry.1", b"{}", at_ms=now_ms() - 90_000)
    with pytest.raises(StaleMessage):
        guard().admit(old, now_ms())
    assert guard(retry_allowance_ms=60_000).admit(old, now_ms()).source == "orders"
    main = record("orders.events", b"{}", at_ms=now_ms() - 90_000)
    with pytest.raises(StaleMessage):  # the allowance is for retry stages only
        guard(retry_allowance_ms=60_000).admit(main, now_ms())


def test_hmac_identities_from_configuration(tmp_path: Path) -> None:
    secret = b"s" * 32
    keys = {"keys": [{"key_id": "orders-2026", "service": "orders",
                      "secret": base64.urlsafe_b64encode(secret).decode().rstrip("=")}]}
    (tmp_path / "hmac.json").write_text(json.dumps(keys))
    (tmp_path / "orders.key").write_bytes(secret)
    def configured(service: str, key_id: str) -> Identity:
        return load_identity(BusSettings(
            service_name=service, signing_algorithm="hmac-sha256", signing_key_id=key_id,
            signing_key_file=str(tmp_path / "orders.key"),
            hmac_keys_file=str(tmp_path / "hmac.json"), access_json=ACCESS), env={})

    sender = configured("orders", "orders-2026")
    receiver = configured("gateway", "gw")
    reply = new_request(source="orders", operation="o.p", value=b"{}",
                        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 1000)
    sealed = sender.outgoing(reply, "mesh.replies")
    assert sealed.signature is not None
    assert sealed.signature.startswith("hmac-sha256:orders-2026:")
    check = guard_for(receiver, BusSettings(service_name="gateway"))
    admitted = check.admit(Record("mesh.replies", 0, 0, sealed.value, None,
                                  to_headers(sealed)), now_ms())
    assert admitted.id == reply.id
    forged = replace(sealed, value=b'{"x":1}')
    with pytest.raises(BadSignature):
        check.admit(Record("mesh.replies", 0, 1, forged.value, None, to_headers(forged)),
                    now_ms())


def test_consumption_is_enforced_when_the_map_declares_it() -> None:
    open_consume = AccessPolicy.from_dict({"orders": ["mesh.replies"]})
    assert open_consume.may_consume("orders", "anything")  # no consume map: not restricted
    policy = AccessPolicy.from_dict({"orders": ["mesh.replies"]},
                                    {"orders": ["orders.*requests"]})
    assert policy.may_consume("orders", "orders.canary.requests")
    with pytest.raises(NotAllowed):
        policy.check_consume("orders", "payments.requests")
    with pytest.raises(NotAllowed):
        policy.check_consume("gateway", "orders.requests")


async def test_a_worker_refuses_to_consume_a_topic_it_may_not() -> None:
    from bus.runtime.worker import ServiceWorker
    from bus.service import Service
    from bus.transport.memory import MemoryBroker, MemoryTransport

    broker = MemoryBroker()
    broker.create_topic("orders.requests")
    identity = Identity("orders", None, None, AccessPolicy.from_dict(
        {"orders": ["mesh.replies"]}, {"orders": ["orders.canary.requests"]}))
    worker = ServiceWorker(Service("orders"), MemoryTransport(broker),
                           BusSettings(service_name="orders"), identity,
                           store=MemoryIdempotencyStore())
    with pytest.raises(NotAllowed):
        await worker.run(asyncio.Event())
