"""The policy model: strict validation, the derived access, and route overlap."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bus.policy import Policy, Service, ServiceKey, Topic, check_policy, subset_request_topic
from bus.policy.checks import dotted, overlap_example
from bus.policy.model import route_segments
from bus.security.access import AccessPolicy
from bus.security.keys import encode_b64url, generate_ed25519

POLICY = {
    "services": {
        "gateway": {"edge": True},
        "orders": {"operations": ["orders.create", "orders.get"], "subsets": ["", "canary"]},
        "billing": {"operations": ["billing.charge"]},
    },
    "topics": {
        "orders.requests": {"partitions": 6, "retention_ms": 86400000},
        "orders.canary.requests": {"partitions": 2},
        "billing.requests": {"partitions": 1, "cleanup_policy": "compact",
                             "compression": "zstd", "config": {"max.message.bytes": "2097152"}},
        "mesh.replies": {"partitions": 16},
        "audit.events": {"partitions": 1},
    },
    "access": {
        "gateway": {"call": ["orders.*"], "consume": ["mesh.replies"]},
        "orders": {"produce": ["mesh.replies", "audit.*"], "call": ["billing.charge"],
                   "consume": ["mesh.replies"]},
        "billing": {"produce": ["mesh.replies"]},
    },
    "routes": [{"method": "POST", "path": "/v1/orders", "operation": "orders.create",
                "auth": "jwt", "rate_limit": {"per_second": 50, "burst": 100}}],
    "traffic": {"orders.create": {"split": [{"subset": "", "weight": 95},
                                            {"subset": "canary", "weight": 5}]}},
    "edge": {"jwt": {"issuer": "https://issuer.example", "audience": ["meshgate"],
                     "jwks_url": "https://issuer.example/jwks.json"}},
}


def policy(**changes: object) -> Policy:
    return Policy.from_json(json.dumps({**POLICY, **changes}))


def test_a_consistent_policy() -> None:
    assert check_policy(policy()) == []


def test_request_topics_per_subset() -> None:
    assert subset_request_topic("orders") == "orders.requests"
    assert subset_request_topic("orders", "canary") == "orders.canary.requests"
    assert policy().request_topics("orders") == ("orders.requests", "orders.canary.requests")
    assert policy().request_topics("nobody") == ()


def test_calling_implies_producing_to_every_subset_of_the_owner() -> None:
    assert policy().produce_map() == {
        "gateway": ["orders.requests", "orders.canary.requests"],
        "orders": ["mesh.replies", "audit.events", "billing.requests"],
        "billing": ["mesh.replies"],
    }
    access = AccessPolicy.from_dict(policy().produce_map())
    assert access.may_produce("gateway", "orders.canary.requests")
    assert not access.may_produce("gateway", "billing.requests")


def test_serving_implies_consuming_ones_own_request_topics() -> None:
    assert policy().consume_map() == {
        "gateway": ["mesh.replies"],
        "orders": ["mesh.replies", "orders.requests", "orders.canary.requests"],
        "billing": ["billing.requests"],
    }


def test_owners_and_calls() -> None:
    p = policy()
    assert p.owner_of("orders.get") == "orders"
    assert p.owner_of("orders.cancel") is None
    assert p.callable_operations("gateway") == ("orders.create", "orders.get")
    assert p.may_call("orders", "billing.charge")
    assert not p.may_call("billing", "orders.create")


def test_kafka_config_of_a_topic() -> None:
    p = policy()
    assert p.topics["orders.requests"].kafka_config() == {"retention.ms": "86400000"}
    assert p.topics["billing.requests"].kafka_config() == {
        "cleanup.policy": "compact", "compression.type": "zstd", "max.message.bytes": "2097152",
    }
    assert p.topics["audit.events"].kafka_config() == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"topics": {"t": {"partitions": "6"}}},  # strict: no coercion of text to numbers
        {"topics": {"t": {"partitions": 6, "retention": 5}}},  # closed: unknown keys refused
        {"topics": {"..": {"partitions": 1}}},
        {"services": {"Orders": {}}},
        {"services": {"orders": {"operations": ["orders.a", "orders.a"]}}},
        {"services": {"orders": {"subsets": ["Canary"]}}},
        {"routes": [{"method": "GET", "path": "/x", "operation": "a.b"}]},  # auth is required
        {"routes": [{"method": "GET", "path": "/x", "operation": "a.b", "auth": "none",
                     "timeout_ms": 29001}]},
        {"traffic": {"a.b": {"split": [{"subset": "", "weight": 50}]}}},
    ],
)
def test_strict_closed_models(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Policy.from_json(json.dumps(bad))


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        policy().routes[0].timeout_ms = 5


def test_python_construction_and_json_round_trip() -> None:
    built = Policy(services={"orders": Service(operations=("orders.create",))},
                   topics={"orders.requests": Topic(partitions=3)})
    assert Policy.from_json(built.model_dump_json()) == built
    assert Policy.from_json(policy().model_dump_json()) == policy()


@pytest.mark.parametrize(
    ("a", "b", "example"),
    [
        ("/v1/orders/{id}", "/v1/orders/new", ["v1", "orders", "new"]),
        ("/v1/orders/{id}", "/v1/orders/{key}", ["v1", "orders", "x"]),
        ("/v1/{rest+}", "/v1/a/{b}/c", ["v1", "a", "x", "c"]),
        ("/", "/", []),
        ("/v1/orders", "/v1/orders/{id}", None),
        ("/v1/{rest+}", "/v1", None),
        ("/v1/a", "/v1/b", None),
    ],
)
def test_overlap_example(a: str, b: str, example: list[str] | None) -> None:
    assert overlap_example(route_segments(a), route_segments(b)) == example
    assert overlap_example(route_segments(b), route_segments(a)) == example


def test_dotted_paths() -> None:
    assert dotted(("traffic", "orders.create", "split", 1)) == 'traffic["orders.create"].split[1]'
    assert dotted(("services", "orders", "subsets", 0)) == "services.orders.subsets[0]"


def test_keyring_of_published_keys() -> None:
    _, verify = generate_ed25519("orders")
    services = {"orders": {"operations": ["orders.create"], "keys": [
        {"key_id": verify.key_id, "public_key": encode_b64url(verify.material)},
        {"key_id": "next-key"},
        {"key_id": "shared", "algorithm": "hmac-sha256"},
    ]}}
    ring = policy(services=services).keyring()
    assert [key.key_id for key in ring] == [verify.key_id]
    assert ring.get(verify.key_id) == verify


@pytest.mark.parametrize("key_id", ["has space", "a:b", "", "x" * 129, "ok!x"])
def test_key_ids_are_checked_whole(key_id: str) -> None:
    with pytest.raises(ValidationError):
        ServiceKey(key_id=key_id)


def test_edges_are_the_services_marked_edge() -> None:
    assert policy().edges() == ["gateway"]
    assert Policy.model_validate({"services": {"orders": {}}}).edges() == []
