"""The authorized edge (``infra.stack.parts.authorized_edge``) through real HTTP: the emulated HTTP
API calls the Lambda authorizer first (REQUEST, payload 2.0, simple responses) and passes
its context to a gateway that trusts it (``MESH_TRUST_AUTHORIZER=1``).

How we know the principal came from the authorizer: that gateway never reads the
``Authorization`` or ``x-api-key`` headers (invoked directly with a valid token and no
authorizer context, it answers 401), yet through the API a valid token is answered 200 and
the messages it puts on the bus carry the token's subject and scopes as the signed
``mesh_principal``. What the gateway still decides itself: scopes (403 problem+json), the API
key's usage plan (429), validation. What API Gateway decides: a forged credential
is refused by the authorizer with API Gateway's own 403, and never reaches the bus.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.deploy import aws as deploy
from infra.keys import dev_issuer
from infra.local import lifecycle
from infra.settings import Settings
from tests.e2e.edge_support import _end_offsets, issue_key, nothing_reaches_the_bus, token

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
EVENT = Path(__file__).resolve().parent.parent / "events" / "apigw_v2_post_orders.json"
MARKER = f"authz-{uuid.uuid4().hex[:12]}"  # in every refused request: never on the bus
ORDER: dict[str, Any] = {"customer": "e2e-authorized-edge",
                         "lines": [{"sku": "a-1", "quantity": 1, "unit_price": "3.00"}]}


@pytest.fixture(scope="module")
def authorized(endpoint: str, settings: Settings) -> str:
    """The authorized edge's base URL, as ``meshgate status --json`` reports it."""
    url = lifecycle.status(settings)["authorized_endpoint"]
    assert isinstance(url, str), "deploy the stack with the authorizer (meshgate deploy)"
    assert url != endpoint
    return url


def api_gateway_refusal(response: httpx.Response) -> None:
    """API Gateway's own 403 (the authorizer said no): not the gateway's problem+json, and
    without the ``x-request-id`` the gateway puts on every answer it gives."""
    assert response.status_code == 403, response.text
    assert response.json() == {"message": "Forbidden"}
    assert not response.headers["content-type"].startswith(PROBLEM)
    assert "x-request-id" not in response.headers


def principals_on_the_bus(settings: Settings, since: dict[TopicPartition, int],
                          subject: str) -> list[dict[str, Any]]:
    """The ``mesh_principal`` of every request written after ``since`` whose principal
    names ``subject``."""

    async def read() -> list[dict[str, Any]]:
        until = await _end_offsets(settings.kafka_bootstrap)
        wanted = {tp: until[tp] for tp in since if until[tp] > since[tp]}
        found: list[dict[str, Any]] = []
        if not wanted:
            return found
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                    enable_auto_commit=False)
        await asyncio.wait_for(consumer.start(), 10)
        try:
            consumer.assign(list(wanted))
            for tp in wanted:
                consumer.seek(tp, since[tp])
            async with asyncio.timeout(20):
                while wanted:
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, records in batches.items():
                        for record in records:
                            raw = dict(record.headers).get("mesh_principal")
                            if raw is not None and subject.encode() in raw:
                                found.append(json.loads(raw))
                        if records and records[-1].offset + 1 >= wanted.get(tp, 0):
                            wanted.pop(tp, None)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def test_a_valid_token_is_answered_with_the_authorizers_principal(
    authorized: str, settings: Settings
) -> None:
    subject = f"authz-user-{uuid.uuid4().hex[:8]}"
    before = asyncio.run(_end_offsets(settings.kafka_bootstrap))
    response = httpx.get(f"{authorized}/v1/products/sku-1",
                         headers={"authorization": f"Bearer {token(settings, sub=subject)}"},
                         timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]  # the gateway answered
    assert response.json()["data"]["stock"]["sku"] == "sku-1"
    seen = principals_on_the_bus(settings, before, subject)
    assert seen, "the aggregate's calls carry the caller's principal"
    for principal in seen:
        assert principal["sub"] == subject
        assert principal["method"] == "jwt"
        assert "catalog:read" in principal["scopes"]


def test_the_gateway_behind_the_authorizer_ignores_the_credentials_themselves(
    authorized: str, settings: Settings
) -> None:
    """Invoked directly, the trusting gateway answers a valid token with 401: it does not
    check tokens, so the 200 through the API is the authorizer's principal at work. Given an
    authorizer context it believes it, which is why only API Gateway may invoke it; the
    default gateway, given the same context, still demands credentials."""
    outputs = deploy.stack_outputs(settings)
    assert outputs is not None
    lam = deploy.client(settings, "lambda")

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        result = lam.invoke(FunctionName=outputs[function],
                            Payload=json.dumps(event).encode())
        payload: dict[str, Any] = json.loads(result["Payload"].read())
        assert "FunctionError" not in result, payload
        return payload

    with_token = product_event({"authorization": f"Bearer {token(settings)}"})
    answer = invoke("AuthorizedGatewayFunctionName", with_token)
    assert answer["statusCode"] == 401, answer
    assert json.loads(body_of(answer))["reason"] == "missing_credentials"

    forged = product_event({})
    forged["requestContext"]["authorizer"] = {"lambda": {"principal": json.dumps(
        {"sub": "forged", "method": "jwt", "scopes": ["catalog:read"]})}}
    assert invoke("AuthorizedGatewayFunctionName", forged)["statusCode"] == 200
    refused = invoke("GatewayFunctionName", forged)
    assert refused["statusCode"] == 401, refused


def body_of(answer: dict[str, Any]) -> bytes:
    body = answer["body"].encode()
    return base64.b64decode(body) if answer.get("isBase64Encoded") else body


def product_event(headers: dict[str, str]) -> dict[str, Any]:
    """The recorded API Gateway v2 event, turned into ``GET /v1/products/sku-1``."""
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event.pop("body")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/products/sku-1"
    event["requestContext"]["http"]["method"] = "GET"
    event["headers"] = {"host": event["headers"]["host"], "accept": "*/*", **headers}
    return event


def test_the_gateway_still_checks_the_routes_scopes(authorized: str,
                                                    settings: Settings) -> None:
    with nothing_reaches_the_bus(settings, MARKER):
        response = httpx.get(f"{authorized}/v1/products/{MARKER}", timeout=30, headers={
            "authorization": f"Bearer {token(settings, scope='reports:write')}"})
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith(PROBLEM)  # the gateway's 403
    assert response.json()["reason"] == "insufficient_scope"


def _forged_tokens(settings: Settings) -> dict[str, str]:
    now = int(time.time())
    claims = dev_issuer.token_claims(dev_issuer.issuer_config(settings),
                                     {"sub": "mallory", "scope": "catalog:read"},
                                     ttl_s=600, now=now)
    valid = token(settings)
    header, payload, signature = valid.split(".")
    return {
        "alg none": jwt.encode(claims, key="", algorithm="none"),
        "signed by another key": dev_issuer.sign(dev_issuer.new_key(), claims),
        "expired": token(settings, exp=now - 120, iat=now - 900),
        "wrong audience": token(settings, aud="someone-else"),
        "tampered payload": f"{header}.{payload[:-4]}AAAA.{signature}",
        "not a jwt": "not.a.jwt",
    }


def test_missing_or_forged_tokens_are_refused_by_api_gateway(authorized: str,
                                                             settings: Settings) -> None:
    url = f"{authorized}/v1/products/{MARKER}"
    forged = _forged_tokens(settings)
    with nothing_reaches_the_bus(settings, MARKER):
        missing = httpx.get(url, timeout=30)
        answers = {"basic": httpx.get(url, headers={"authorization": "Basic dXNlcjpwYXNz"},
                                      timeout=30),
                   "token and key": httpx.get(url, timeout=30, headers={
                       "authorization": f"Bearer {token(settings)}", "x-api-key": "mgk_x"})}
        answers |= {name: httpx.get(url, headers={"authorization": f"Bearer {value}"},
                                    timeout=30)
                    for name, value in forged.items()}
    for name, response in answers.items():
        assert response.status_code == 403, name
        api_gateway_refusal(response)
    # No credentials at all pass the authorizer as anonymous; the gateway, which knows the
    # route needs a token, refuses with its own 401.
    assert missing.status_code == 401, missing.text
    assert missing.json()["reason"] == "missing_credentials"
    assert "x-request-id" in missing.headers


def test_routes_without_auth_stay_reachable_behind_the_authorizer(authorized: str) -> None:
    order = {**ORDER, "customer": "e2e-anonymous-behind-authorizer"}
    response = httpx.post(f"{authorized}/v1/orders", json=order, timeout=30)
    assert response.status_code == 201, response.text


def partner_order(authorized: str, key: str | None, customer: str) -> httpx.Response:
    headers = {} if key is None else {"x-api-key": key}
    return httpx.post(f"{authorized}/v1/partner/orders", json={**ORDER, "customer": customer},
                      headers=headers, timeout=30)


def test_a_valid_api_key_places_an_order_as_its_key(authorized: str,
                                                    settings: Settings) -> None:
    key, key_id = issue_key(settings)
    before = asyncio.run(_end_offsets(settings.kafka_bootstrap))
    response = partner_order(authorized, key, "e2e-authorized-edge")
    assert response.status_code == 201, response.text
    assert response.json()["customer"] == "e2e-authorized-edge"
    [principal] = principals_on_the_bus(settings, before, key_id)
    assert principal["method"] == "api_key"
    assert principal["key_id"] == key_id


def test_bad_api_keys_are_refused_by_api_gateway(authorized: str,
                                                 settings: Settings) -> None:
    with nothing_reaches_the_bus(settings, MARKER):
        missing = partner_order(authorized, None, MARKER)
        answers = [partner_order(authorized, "not-a-key", MARKER),
                   partner_order(authorized, "mgk_0123456789abcdef." + "A" * 43, MARKER)]
    for response in answers:
        api_gateway_refusal(response)
    assert missing.status_code == 401, missing.text  # the gateway's own refusal


def test_the_keys_usage_plan_still_limits(authorized: str, settings: Settings) -> None:
    """The authorizer passes the key's plan; the gateway's buckets and quota apply it."""
    slow, _ = issue_key(settings, rate=0.01, burst=2)
    answers = [partner_order(authorized, slow, "e2e-authorized-rate") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429], answers[-1].text
    assert answers[-1].json()["reason"] == "rate_limited"
    assert int(answers[-1].headers["retry-after"]) >= 1

    capped, _ = issue_key(settings, quota=2)
    answers = [partner_order(authorized, capped, "e2e-authorized-quota") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429], answers[-1].text
    assert answers[-1].json()["reason"] == "quota_exceeded"
