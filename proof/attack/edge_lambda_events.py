"""Unreadable Lambda events, invoked directly on the deployed functions (the gateway, the
authorizer, the orders Kafka-event function): null, ``{}``, a list, a string, null headers,
a body that is an object, bad base64, an event of the wrong kind.

Each must get a clean refusal (400-shaped, or the authorizer's deny), never a function error:
an uncaught exception makes the runtime restart the process, and the next genuine request
pays a cold start. For the gateway, every refusal must also come from the same process as
the first one (its ``instance`` id, with its invocation count going up). The control is a
genuine ``GET /healthz`` event, answered 200.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.deploy import aws as deploy
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.edge_cases import LAMBDA_EVENTS

EVENTS = Path(__file__).resolve().parents[2] / "tests" / "events"


def healthz_event() -> dict[str, Any]:
    """The recorded HTTP API v2 event, turned into ``GET /healthz``."""
    event: dict[str, Any] = json.loads((EVENTS / "apigw_v2_post_orders.json").read_text())
    event.pop("body")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/healthz"
    event["requestContext"]["http"]["method"] = "GET"
    return event


def gateway_events() -> list[tuple[str, bytes]]:
    good = healthz_event()

    def changed(**fields: Any) -> bytes:
        event = copy.deepcopy(good)
        event.update(fields)
        return json.dumps(event).encode()

    return [("null", b"null"), ("empty object", b"{}"), ("list", b"[1, 2]"),
            ("string", b'"GET /"'), ("null headers", changed(headers=None)),
            ("body an object", changed(body={"customer": "x"})),
            ("bad base64 body", changed(body="%%%", isBase64Encoded=True)),
            ("null requestContext", changed(requestContext=None)),
            ("a Kafka event", (EVENTS / "msk_orders_create_batch.json").read_bytes())]


OTHER_EVENTS = [("null", b"null"), ("list", b"[1]"), ("string", b'"x"'), ("number", b"7")]
KAFKA_EVENTS = [*OTHER_EVENTS, ("empty object", b"{}"), ("records null",
                json.dumps({"eventSource": "SelfManagedKafka",
                            "bootstrapServers": "127.0.0.1:9092", "records": None}).encode())]


def _invoke(lam: Any, function: str, payload: bytes) -> tuple[str | None, Any]:
    result = lam.invoke(FunctionName=function, Payload=payload)
    raw = result["Payload"].read()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = raw[:80].decode(errors="replace")
    return result.get("FunctionError"), answer


def gateway_refusal(answer: Any) -> tuple[str, int] | None:
    """(instance, invocation) of the gateway's 400 refusal of an unreadable event."""
    if not isinstance(answer, dict) or answer.get("statusCode") != 400:
        return None
    body = json.loads(answer.get("body") or "{}")
    if body.get("reason") != "unreadable_event":
        return None
    return str(body.get("instance")), int(body.get("invocations", 0))


def denied(answer: Any) -> bool:
    """The authorizer's clean deny."""
    return isinstance(answer, dict) and answer.get("isAuthorized") is False


def refused_batch(answer: Any) -> bool:
    """The Kafka-event function's 400 (no batchItemFailures: a mapping would keep the batch)."""
    return (isinstance(answer, dict) and answer.get("statusCode") == 400
            and "batchItemFailures" not in answer)


def run_lambda_events(settings: Settings) -> tuple[list[Outcome], list[str]]:
    """Synchronous (boto3). Every case is one direct invocation."""
    outputs = deploy.stack_outputs(settings) or {}
    lam = deploy.client(settings, "lambda")
    outcomes: list[Outcome] = []
    gateway = outputs.get("GatewayFunctionName")
    if gateway is None:
        return [], ["edge: no deployed gateway function to invoke"]
    error, answer = _invoke(lam, gateway, json.dumps(healthz_event()).encode())
    healthy = error is None and isinstance(answer, dict) and answer.get("statusCode") == 200
    outcomes.append(Outcome(CONTROL, "lambda events: a genuine GET /healthz event", False,
                            1 if healthy else 0, f"{error or answer.get('statusCode')}"
                            if isinstance(answer, dict) else str(error)))
    first: tuple[str, int] | None = None
    for label, payload in gateway_events():
        error, answer = _invoke(lam, gateway, payload)
        seen = None if error else gateway_refusal(answer)
        same_process = seen is not None and (
            first is None or (seen[0] == first[0] and seen[1] > first[1]))
        first = first or seen
        text = (f"function error {error}" if error else "400 unreadable_event"
                if seen is not None and same_process else
                "refused by a restarted process" if seen is not None else f"{answer}"[:60])
        outcomes.append(Outcome(LAMBDA_EVENTS, f"gateway: {label}", same_process, 0, text))
    checks: list[tuple[str, list[tuple[str, bytes]], Callable[[Any], bool]]] = [
        ("AuthorizerFunctionName", OTHER_EVENTS, denied),
        ("OrdersEventsFunctionName", KAFKA_EVENTS, refused_batch)]
    for key, events, clean in checks:
        function = outputs.get(key)
        if function is None:
            continue
        for label, payload in events:
            error, answer = _invoke(lam, function, payload)
            refused = error is None and clean(answer)
            text = f"function error {error}" if error else f"{answer}"[:60]
            outcomes.append(Outcome(LAMBDA_EVENTS, f"{key[:-12].lower()}: {label}", refused, 0,
                                    "refused cleanly" if refused else text))
    return outcomes, []
