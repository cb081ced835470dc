"""A service's ``side_effect_free`` operations (issue 15): checked by the policy model, carried
by the access map every service loads, read by the worker (tests/unit/test_worker_store_use)."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from bus.config import BusSettings
from bus.policy.model import Policy
from bus.security.access import AccessPolicy
from bus.security.identity import IdentityError, load_identity
from bus.security.keys import KeyRing, generate_ed25519
from infra.policy import access_map, load_policy
from infra.settings import ROOT

KEY, VERIFY = generate_ed25519("orders")
KEYRING = json.dumps(KeyRing([VERIFY]).to_dict())


def policy(**service: object) -> Policy:
    return Policy.from_json(json.dumps({"services": {"orders": {
        "operations": ["orders.create", "orders.quote"], **service}}}))


def test_the_flag_names_operations_of_the_service() -> None:
    assert policy(side_effect_free=["orders.quote"]).side_effect_free() == ["orders.quote"]
    with pytest.raises(ValidationError, match="not among its operations"):
        policy(side_effect_free=["orders.delete"])
    with pytest.raises(ValidationError, match="more than once"):
        policy(side_effect_free=["orders.quote", "orders.quote"])
    assert policy().side_effect_free() == []


def test_the_project_declares_its_read_only_operations() -> None:
    found = access_map(load_policy(ROOT / "policies"))
    assert found["side_effect_free"] == ["inventory.stock", "orders.quote"]


def load(access: dict[str, object]) -> AccessPolicy:
    settings = BusSettings(service_name="orders", keyring_json=KEYRING,
                           access_json=json.dumps(access))
    env = {"MESH_SIGNING_KEY": base64.b64encode(KEY.secret).decode()}
    return load_identity(settings, env=env).access


def test_a_service_loads_the_flag_from_its_access_map() -> None:
    access = load({"produce": {"orders": []}, "side_effect_free": ["orders.quote"]})
    assert not access.has_side_effects("orders.quote")
    assert access.has_side_effects("orders.create")
    older = load({"produce": {"orders": []}})  # an access map written before the flag
    assert older.has_side_effects("orders.quote")
    with pytest.raises(IdentityError, match="side_effect_free"):
        load({"produce": {"orders": []}, "side_effect_free": "orders.quote"})


def test_open_and_insecure_access_has_side_effects_everywhere() -> None:
    assert AccessPolicy.open().has_side_effects("anything.at_all")
