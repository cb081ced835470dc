"""Which operation a request carries: its request topic is shared by every operation of the
service (and the broker's ACLs stop at the topic), so receivers check the access map's
``call`` too (bus.security.access, bus.security.inbound)."""

from __future__ import annotations

import base64
import json

import pytest

from bus.config import BusSettings
from bus.envelope import KIND_EVENT, Envelope, ReplyTo, new_id, new_request, now_ms, to_headers
from bus.errors import MeshError
from bus.security.access import AccessPolicy, NotAllowed
from bus.security.identity import Identity, IdentityError, load_identity
from bus.security.inbound import guard_for
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.signing import sign
from bus.testing import MeshTestKit
from bus.transport import Record
from functions.inventory.service import inventory
from functions.orders.service import orders
from infra.policy import access_map, load_policy
from infra.settings import ROOT

TOPIC = "shop.requests"


def _mesh(calls: dict[str, list[str]] | None) -> tuple[Identity, Identity]:
    caller_key, caller_v = generate_ed25519("caller")
    shop_key, shop_v = generate_ed25519("shop")
    access = AccessPolicy.from_dict({"caller": [TOPIC], "shop": []}, calls=calls)
    ring = KeyRing([caller_v, shop_v])
    return Identity("caller", caller_key, ring, access), Identity("shop", shop_key, ring, access)


def _request(caller: Identity, operation: str) -> Record:
    envelope = new_request(source="caller", operation=operation, value=b"{}",
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 30_000)
    assert caller.signing_key is not None
    signed = sign(envelope, TOPIC, caller.signing_key)
    return Record(TOPIC, 0, 0, signed.value, headers=tuple(to_headers(signed)))


def _verdict(shop: Identity, record: Record) -> str | None:
    try:
        guard_for(shop, BusSettings(service_name="shop")).admit(record, now_ms())
    except MeshError as exc:
        return exc.code
    return None


def test_a_request_for_an_operation_the_caller_may_not_call_is_refused() -> None:
    caller, shop = _mesh({"caller": ["shop.quote"]})
    assert _verdict(shop, _request(caller, "shop.quote")) is None
    assert _verdict(shop, _request(caller, "shop.create")) == "not_allowed"


def test_patterns_and_an_older_map_without_call() -> None:
    caller, shop = _mesh({"caller": ["shop.*"]})
    assert _verdict(shop, _request(caller, "shop.create")) is None
    caller, shop = _mesh(None)  # no 'call' in the map: the topic decides, as before
    assert _verdict(shop, _request(caller, "shop.create")) is None
    with pytest.raises(NotAllowed, match=r"caller may not call shop\.x"):
        AccessPolicy.from_dict({}, calls={"caller": []}).check_call("caller", "shop.x")
    assert AccessPolicy.open().may_call("anyone", "shop.x")


def test_events_are_not_calls() -> None:
    caller_key, caller_v = generate_ed25519("caller")
    access = AccessPolicy.from_dict({"caller": ["shop.events"]}, calls={"caller": []})
    shop = Identity("shop", None, KeyRing([caller_v]), access)
    event = sign(Envelope(id=new_id(), source="caller", type="shop.happened", kind=KIND_EVENT,
                          value=b"{}", time_ms=now_ms()), "shop.events", caller_key)
    record = Record("shop.events", 0, 0, event.value, headers=tuple(to_headers(event)))
    assert _verdict(shop, record) is None


def test_the_project_access_map_names_each_services_calls() -> None:
    policy = load_policy(ROOT / "policies")
    calls = access_map(policy)["call"]
    assert set(calls) == set(policy.services)
    for service, operations in calls.items():
        assert operations == list(policy.callable_operations(service))
    assert "inventory.stock" in calls["orders"]  # orders.quote asks inventory.stock
    assert not any(op.startswith("orders.") for op in calls["inventory"])


def test_identity_reads_the_call_map() -> None:
    key, _ = generate_ed25519("shop")
    env = {"MESH_SIGNING_KEY": base64.b64encode(key.secret).decode()}

    def identity(access: object) -> Identity:
        return load_identity(BusSettings(service_name="shop", keyring_json='{"keys": []}',
                                         access_json=json.dumps(access)), env=env)

    calls = identity({"produce": {}, "call": {"a": ["shop.x"]}}).access
    assert calls.may_call("a", "shop.x")
    assert not calls.may_call("a", "shop.y")
    with pytest.raises(IdentityError, match="'call' must be"):
        identity({"produce": {}, "call": ["shop.x"]})


async def test_the_demo_runs_under_the_projects_call_map() -> None:
    """The edge's calls and orders' nested call (orders.quote asks inventory.stock) are all
    in the project's ``call``: none is refused, nothing is quarantined."""
    raw = access_map(load_policy(ROOT / "policies"))
    access = AccessPolicy.from_dict(raw["produce"], raw["consume"], raw["replay"],
                                    edges=raw["edges"], calls=raw["call"])
    async with MeshTestKit(services=[orders, inventory], access=access) as kit:
        quote = await kit.client("gateway").request("orders.quote", {"sku": "sku-1"})
        stock = await kit.client("gateway").request("inventory.stock", {"sku": "sku-1"})
        assert quote["sku"] == stock["sku"] == "sku-1"
        assert [e.type for e in kit.envelopes("inventory.requests")] == [
            "inventory.stock", "inventory.stock"]
        assert kit.quarantined() == []


async def test_the_caller_refuses_an_operation_it_may_not_call_before_sending() -> None:
    """As for a topic it may not write: NotAllowed at once, nothing sent (the receiver would
    quarantine it and the caller would wait for its deadline)."""
    access = AccessPolicy.from_dict({"gateway": ["orders.requests", "inventory.requests"]},
                                    calls={"gateway": ["orders.quote"]})
    async with MeshTestKit(services=[orders, inventory], access=access) as kit:
        with pytest.raises(NotAllowed, match=r"gateway may not call orders\.create"):
            await kit.client("gateway").request("orders.create", {"sku": "sku-1"})
        with pytest.raises(NotAllowed):
            await kit.client("gateway").submit("orders.create", {}, operation_id="op-1",
                                               timeout_s=5)
        assert kit.records("orders.requests") == []
