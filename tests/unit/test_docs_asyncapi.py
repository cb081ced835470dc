"""``meshgate docs``' generators: the mesh's AsyncAPI document is valid against the official
AsyncAPI 3.0.0 JSON Schema (vendored from @asyncapi/specs), every reference in it resolves,
and it describes every topic, service and operation of the policy; the edge's OpenAPI
document is built without network and is the one the gateway serves."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from bus.envelope import H_CORRELATION, H_REPLY_TO, H_SIGNATURE
from bus.policy.model import Policy
from infra.cli.docs.asyncapi import ENVELOPE_HEADERS, asyncapi_document
from infra.cli.docs.openapi import openapi_document
from infra.policy import access_map, load_policy
from tests.unit.edge_support import PROJECT

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "asyncapi-3.0.0.json").read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)
HEADERS = {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "mesh_kind",
           "mesh_correlation_id", "mesh_reply_to", "mesh_deadline", "mesh_sig", "mesh_principal",
           "traceparent"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "policies")


@pytest.fixture(scope="module")
def doc(policy: Policy) -> dict[str, Any]:
    return asyncapi_document(policy, bootstrap="127.0.0.1:9092")


def errors(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(document)]


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_the_vendored_schema_is_the_official_300_one() -> None:
    assert SCHEMA["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    assert SCHEMA["properties"]["asyncapi"]["const"] == "3.0.0"
    assert not VALIDATOR.is_valid({"asyncapi": "3.0.0"})  # no info: not vacuous
    assert VALIDATOR.is_valid({"asyncapi": "3.0.0", "info": {"title": "t", "version": "1"}})


def test_document_is_valid_asyncapi_300(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert errors(doc) == []
    assert json.loads(json.dumps(doc)) == doc  # plain JSON


@pytest.mark.parametrize("breakage", ["action", "address", "reply_location", "server"])
def test_the_validator_refuses_a_broken_document(doc: dict[str, Any], breakage: str) -> None:
    broken = copy.deepcopy(doc)
    if breakage == "action":
        broken["operations"]["gateway.send.orders.requests"]["action"] = "publish"  # 2.x word
    elif breakage == "address":
        broken["channels"]["orders.requests"]["address"] = 6
    elif breakage == "reply_location":
        reply = broken["operations"]["orders.receive.orders.requests"]["reply"]
        reply["address"]["location"] = "mesh_reply_to"
    else:
        del broken["servers"]["local"]["protocol"]
    assert errors(broken) != []


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = refs(doc)
    assert len(found) > 20
    for ref in found:
        resolve(doc, ref)


def test_one_channel_per_topic_addressed_by_its_name(doc: dict[str, Any],
                                                     policy: Policy) -> None:
    assert {c["address"] for c in doc["channels"].values()} == set(policy.topics)
    for topic, spec in policy.topics.items():
        binding = doc["channels"][topic]["bindings"]["kafka"]
        assert (binding["partitions"], binding["replicas"]) == (spec.partitions,
                                                                spec.replication)


def test_request_topics_carry_their_services_requests(doc: dict[str, Any],
                                                      policy: Policy) -> None:
    for service, spec in policy.services.items():
        for topic in policy.request_topics(service) if spec.operations else ():
            messages = set(doc["channels"][topic]["messages"])
            assert messages == {f"{op}.request" for op in spec.operations}
    replies = set(doc["channels"]["mesh.replies"]["messages"])
    assert replies == {f"{op}.reply" for op in policy.owners()} | {"mesh.error"}
    assert set(doc["channels"]["mesh.async.replies"]["messages"]) == {"orders.report.reply",
                                                                      "mesh.error"}
    assert set(doc["channels"]["mesh.quarantine"]["messages"]) == {"mesh.envelope"}


def test_operations_per_service_follow_the_access_map(doc: dict[str, Any],
                                                      policy: Policy) -> None:
    ops = doc["operations"]
    for service in policy.services:
        for topic in policy.request_topics(service):
            if policy.services[service].operations:
                received = ops[f"{service}.receive.{topic}"]
                assert received["action"] == "receive"
                assert resolve(doc, received["channel"]["$ref"])["address"] == topic
    # The gateway sends to the request topics the access map lets it produce to (orders.*,
    # inventory.*, and any service added to policies/), and reads both reply topics.
    gateway_topics = access_map(policy)["produce"]["gateway"]
    assert {"orders.requests", "inventory.requests"} <= set(gateway_topics)
    assert {name for name in ops if name.startswith("gateway.")} == {
        *(f"gateway.send.{topic}" for topic in gateway_topics),
        "gateway.receive.mesh.replies", "gateway.receive.mesh.async.replies"}
    # orders may call only inventory.stock and inventory.reserve, both on inventory.requests.
    sent = ops["orders.send.inventory.requests"]["messages"]
    assert {m["$ref"].rsplit("/", 1)[1] for m in sent} == {"inventory.stock.request",
                                                          "inventory.reserve.request"}
    for name, operation in ops.items():  # an operation's messages are its channel's
        channel = operation["channel"]["$ref"]
        assert all(m["$ref"].startswith(channel + "/messages/") for m in operation["messages"]), \
            name


def test_a_served_request_declares_its_reply_by_the_reply_to_header(
        doc: dict[str, Any]) -> None:
    reply = doc["operations"]["orders.receive.orders.requests"]["reply"]
    assert reply["address"]["location"] == "$message.header#/mesh_reply_to"
    assert reply["channel"] == {"$ref": "#/channels/mesh.replies"}
    names = {m["$ref"].rsplit("/", 1)[1] for m in reply["messages"]}
    assert names == {"orders.create.reply", "orders.quote.reply", "orders.report.reply",
                     "mesh.error"}


def test_messages_carry_the_envelope_headers_and_the_routes_schemas(
        doc: dict[str, Any], policy: Policy) -> None:
    assert set(ENVELOPE_HEADERS) == HEADERS
    messages = doc["components"]["messages"]
    for name in ("requestHeaders", "replyHeaders", "envelopeHeaders"):
        headers = doc["components"]["schemas"][name]
        assert headers["type"] == "object"
        assert set(headers["properties"]) == HEADERS
        assert jsonschema_rs.meta.is_valid(headers)
        assert H_SIGNATURE in headers["required"]
    request_headers = resolve(doc, messages["orders.create.request"]["headers"]["$ref"])
    assert {H_CORRELATION, H_REPLY_TO} <= set(request_headers["required"])
    create = next(r for r in policy.routes if r.operation == "orders.create")
    assert messages["orders.create.request"]["payload"] == create.request_schema
    assert messages["orders.create.reply"]["payload"] == create.response_schema
    report = next(r for r in policy.routes if r.operation == "orders.report")
    assert messages["orders.report.request"]["payload"] == report.request_schema
    # No route gives inventory.stock a body schema: any object.
    assert messages["inventory.stock.request"]["payload"]["type"] == "object"
    assert resolve(doc, messages["mesh.error"]["payload"]["$ref"])["required"] == [
        "code", "message", "retriable"]


def test_without_a_bootstrap_there_are_no_servers(policy: Policy) -> None:
    doc = asyncapi_document(policy)
    assert "servers" not in doc
    assert errors(doc) == []


def test_openapi_document_is_the_edges_and_valid_openapi_31(policy: Policy) -> None:
    document = openapi_document(policy)
    assert [f"{e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)] == []
    described = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert {(r.method, r.path) for r in policy.routes if r.caller == "gateway"} <= described
    assert policy == PROJECT  # the same policy the edge tests build their app from
