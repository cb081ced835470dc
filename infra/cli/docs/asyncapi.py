"""The mesh as an AsyncAPI 3.0.0 document, generated from the policy. Pure.

- one **channel** per declared topic (address = the topic name, Kafka binding with the
  partitions and replication), whose messages are what travels on it: the requests of the
  operations a service serves on its request topics, the replies (and the shared error
  reply) on the reply topics, a bare envelope elsewhere (``mesh.quarantine``);
- **operations** per service: ``send`` to every topic it may produce to and ``receive`` from
  every topic it consumes (from the access map), named ``<service>.<send|receive>.<topic>``;
  a service's ``receive`` on its request topic declares its ``reply``, addressed by the
  request's ``mesh_reply_to`` header;
- **messages** carry the envelope headers as a header schema (request, reply, other), and
  the payload schema of the routes' ``request_schema`` (requests) and ``response_schema``
  (replies) where a route calling the operation declares one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from bus.envelope import (
    H_CORRELATION,
    H_DEADLINE,
    H_ID,
    H_KIND,
    H_PRINCIPAL,
    H_REPLY_TO,
    H_SIGNATURE,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TYPE,
    KIND_ERROR,
    KIND_REPLY,
    KIND_REQUEST,
    KINDS,
)
from bus.policy.model import Policy

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
REPLY_TOPIC: Final = "mesh.replies"
ASYNC_REPLY_TOPIC: Final = "mesh.async.replies"
ERROR_MESSAGE: Final = "mesh.error"
ENVELOPE_MESSAGE: Final = "mesh.envelope"
ANY_OBJECT: Final[dict[str, Any]] = {"type": "object", "description": "any JSON object"}

_DIGITS = {"type": "string", "pattern": "^-?[0-9]{1,19}$"}
ENVELOPE_HEADERS: Final[dict[str, dict[str, Any]]] = {
    H_SPECVERSION: {"type": "string", "const": "1.0",
                    "description": "CloudEvents spec version (Kafka binding, binary mode)"},
    H_ID: {"type": "string", "description": "the message id (unique per attempt)"},
    H_SOURCE: {"type": "string", "description": "the sending service (checked against the "
                                                  "signature's key owner)"},
    H_TYPE: {"type": "string", "description": "the operation, <service>.<verb>"},
    H_TIME: {"type": "string",
             "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$",
             "description": "when it was sent, RFC 3339 UTC with milliseconds "
                            "(docs/wire-format.md)"},
    H_KIND: {"type": "string", "enum": sorted(KINDS)},
    H_CORRELATION: {"type": "string", "description": "shared by a call's attempts and its "
                                                      "reply"},
    H_REPLY_TO: {"type": "string", "pattern": "^.+:[0-9]{1,19}$",
                 "description": "where the reply goes: <topic>:<partition>"},
    H_DEADLINE: {**_DIGITS, "description": "when the caller stops waiting, Unix ms"},
    H_SIGNATURE: {"type": "string", "pattern": "^(ed25519|hmac-sha256):[A-Za-z0-9._-]{1,128}:"
                                               "[A-Za-z0-9_-]+$",
                  "description": "<algorithm>:<key id>:<base64url signature> over the topic, "
                                 "the value and the contract headers"},
    H_PRINCIPAL: {"type": "string", "description": "the edge's authenticated caller, compact "
                                                    "JSON (sub, iss, scopes, ...); signed"},
    H_TRACEPARENT: {"type": "string", "description": "W3C trace context"},
}
ERROR_PAYLOAD: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["code", "message", "retriable"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "retriable": {"type": "boolean"}},
}


def _headers(kind: str | None) -> dict[str, Any]:
    required = [H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND, H_SIGNATURE]
    properties = {name: dict(schema) for name, schema in ENVELOPE_HEADERS.items()}
    if kind == KIND_REQUEST:
        required += [H_CORRELATION, H_REPLY_TO, H_DEADLINE]
        properties[H_KIND] = {"type": "string", "const": KIND_REQUEST}
    elif kind == KIND_REPLY:
        required += [H_CORRELATION]
        properties[H_KIND] = {"type": "string", "enum": [KIND_ERROR, KIND_REPLY]}
    return {"type": "object", "required": required, "properties": properties}


def _ref(*parts: str) -> dict[str, str]:
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def _schemas_by_operation(policy: Policy, which: str) -> dict[str, dict[str, Any]]:
    """Operation -> the first route's request (or response) schema for it."""
    found: dict[str, dict[str, Any]] = {}
    for route in policy.routes:
        schema = route.request_schema if which == "request" else route.response_schema
        if schema is not None and route.operation is not None:
            found.setdefault(route.operation, dict(schema))
    return found


def request_message(operation: str) -> str:
    return f"{operation}.request"


def reply_message(operation: str) -> str:
    return f"{operation}.reply"


def _messages(policy: Policy) -> dict[str, Any]:
    requests = _schemas_by_operation(policy, "request")
    replies = _schemas_by_operation(policy, "response")
    messages: dict[str, Any] = {}
    for operation, owner in policy.owners().items():
        messages[request_message(operation)] = {
            "name": request_message(operation), "title": f"{operation} request",
            "summary": f"a call of {operation}, served by {owner}",
            "contentType": "application/json",
            "headers": _ref("components", "schemas", "requestHeaders"),
            "payload": requests.get(operation, ANY_OBJECT),
        }
        messages[reply_message(operation)] = {
            "name": reply_message(operation), "title": f"{operation} reply",
            "summary": f"{owner}'s answer to {operation}",
            "contentType": "application/json",
            "headers": _ref("components", "schemas", "replyHeaders"),
            "payload": replies.get(operation, ANY_OBJECT),
        }
    messages[ERROR_MESSAGE] = {
        "name": ERROR_MESSAGE, "title": "error reply",
        "summary": f"any operation's failure ({H_KIND}: {KIND_ERROR})",
        "contentType": "application/json",
        "headers": _ref("components", "schemas", "replyHeaders"),
        "payload": _ref("components", "schemas", "error"),
    }
    messages[ENVELOPE_MESSAGE] = {
        "name": ENVELOPE_MESSAGE, "title": "mesh envelope",
        "summary": "any mesh message (a parked one carries the refusal reason in extra headers)",
        "headers": _ref("components", "schemas", "envelopeHeaders"),
        "payload": {},
    }
    return messages


def _async_operations(policy: Policy) -> list[str]:
    return [route.operation for route in policy.routes
            if route.mode == "async" and route.operation is not None]


def channel_messages(policy: Policy, topic: str) -> list[str]:
    """The component message names that travel on ``topic``."""
    owners = policy.owners()
    for service, spec in policy.services.items():
        if topic in policy.request_topics(service):
            return [request_message(op) for op in spec.operations]
    if topic == REPLY_TOPIC:
        return [*(reply_message(op) for op in owners), ERROR_MESSAGE]
    if topic == ASYNC_REPLY_TOPIC:
        return [*(reply_message(op) for op in dict.fromkeys(_async_operations(policy))),
                ERROR_MESSAGE]
    return [ENVELOPE_MESSAGE]


def _channels(policy: Policy) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for topic, spec in policy.topics.items():
        channels[topic] = {
            "address": topic,
            "title": topic,
            "messages": {name: _ref("components", "messages", name)
                         for name in channel_messages(policy, topic)},
            "bindings": {"kafka": {"topic": topic, "partitions": spec.partitions,
                                   "replicas": spec.replication,
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    return channels


def _operation(policy: Policy, service: str, action: str, topic: str,
               messages: Iterable[str]) -> dict[str, Any]:
    names = list(messages)
    operation: dict[str, Any] = {
        "action": action, "channel": _ref("channels", topic),
        "title": f"{service} {action}s on {topic}",
        "messages": [_ref("channels", topic, "messages", name) for name in names],
    }
    spec = policy.services.get(service)
    if action == "receive" and spec is not None and topic in policy.request_topics(service):
        operation["reply"] = {
            "address": {"location": f"$message.header#/{H_REPLY_TO}",
                        "description": "the topic and partition the caller reads"},
            "channel": _ref("channels", REPLY_TOPIC),
            "messages": [_ref("channels", REPLY_TOPIC, "messages", reply_message(op))
                         for op in spec.operations] + [
                _ref("channels", REPLY_TOPIC, "messages", ERROR_MESSAGE)],
        }
    return operation


def _wanted(policy: Policy, service: str, action: str, topic: str) -> list[str]:
    """The messages ``service`` sends to (or receives from) ``topic``."""
    on_channel = channel_messages(policy, topic)
    owners = policy.owners()
    served = set(policy.services[service].operations) if service in policy.services else set()
    callable_ops = set(policy.callable_operations(service))
    if topic in (REPLY_TOPIC, ASYNC_REPLY_TOPIC):
        ops = served if action == "send" else callable_ops
        if not ops:
            return []
        return [m for m in on_channel
                if m == ERROR_MESSAGE or m.removesuffix(".reply") in ops]
    if any(topic in policy.request_topics(owner) for owner in set(owners.values())):
        ops = served if action == "receive" else callable_ops
        return [m for m in on_channel if m.removesuffix(".request") in ops]
    return on_channel


def _operations(policy: Policy) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for service in policy.services:
        for action, topics in (("send", policy.produce_topics(service)),
                               ("receive", policy.consume_topics(service))):
            for topic in topics:
                if topic not in policy.topics:
                    continue
                messages = _wanted(policy, service, action, topic)
                if messages:
                    operations[f"{service}.{action}.{topic}"] = _operation(
                        policy, service, action, topic, messages)
    return operations


def asyncapi_document(policy: Policy, *, bootstrap: str | None = None,
                      version: str = "0.1.0") -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``policy``'s mesh (``bootstrap``: a Kafka server)."""
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "meshgate mesh", "version": version,
            "description": "Service-to-service calls over Kafka: signed requests on each "
                           "service's request topics, replies on the reply topics. Generated "
                           "from the policies by `meshgate docs`.",
        },
        "defaultContentType": "application/json",
    }
    if bootstrap is not None:
        document["servers"] = {"local": {"host": bootstrap, "protocol": "kafka",
                                         "description": "the broker of the local stack"}}
    document["channels"] = _channels(policy)
    document["operations"] = _operations(policy)
    document["components"] = {
        "schemas": {"requestHeaders": _headers(KIND_REQUEST),
                    "replyHeaders": _headers(KIND_REPLY),
                    "envelopeHeaders": _headers(None),
                    "error": ERROR_PAYLOAD},
        "messages": _messages(policy),
    }
    return document
