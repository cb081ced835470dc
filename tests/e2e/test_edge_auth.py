"""Every way to fail authentication, through the emulated API Gateway into the deployed
gateway: each answer is 401 or 403 problem+json, and no refused request reaches the bus."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from infra.cli import keys as keys_cli
from infra.keys import dev_issuer
from infra.settings import Settings
from tests.e2e.edge_support import issue_key, nothing_reaches_the_bus, token

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
ORDER: dict[str, Any] = {"customer": "e2e-key-order",
                         "lines": [{"sku": "k-1", "quantity": 1, "unit_price": "2.00"}]}


MARKER = f"e2e-{uuid.uuid4().hex[:12]}"  # in every refused request: never on the bus


def product(endpoint: str, headers: dict[str, str], sku: str = MARKER) -> httpx.Response:
    return httpx.get(f"{endpoint}/v1/products/{sku}", headers=headers, timeout=30)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _forged_tokens(settings: Settings) -> dict[str, str]:
    now = int(time.time())
    key = dev_issuer.signing_key(settings)
    claims = dev_issuer.token_claims(dev_issuer.issuer_config(settings),
                                     {"sub": "mallory", "scope": "catalog:read"},
                                     ttl_s=600, now=now)
    unsigned = jwt.encode(claims, key="", algorithm="none")
    # HS256 keyed with the issuer's public key: the classic algorithm confusion.
    confused = _hs256_with_public_key(claims, key.public_pem(), key.kid)
    return {
        "expired": token(settings, exp=now - 120, iat=now - 900),
        "not yet valid": token(settings, nbf=now + 600),
        "wrong issuer": token(settings, iss="https://evil.example"),
        "wrong audience": token(settings, aud="someone-else"),
        "alg none": unsigned,
        "HS256 with the public key": confused,
        "unknown kid": dev_issuer.mint(settings, {"sub": "e2e", "scope": "catalog:read"},
                                       headers={"kid": "not-a-known-key"}),
        "signed by another key": dev_issuer.sign(dev_issuer.new_key(), claims),
        "tampered payload": _tampered(token(settings)),
    }


def _hs256_with_public_key(claims: dict[str, Any], public_pem: bytes, kid: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _tampered(compact: str) -> str:
    header, payload, signature = compact.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_a_valid_token_is_answered(endpoint: str, settings: Settings) -> None:
    response = product(endpoint, {"authorization": f"Bearer {token(settings)}"}, "sku-7")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["stock"]["sku"] == "sku-7"


@pytest.mark.parametrize(("header", "reason"), [
    (None, "missing_credentials"),
    ("Basic dXNlcjpwYXNz", "malformed_credentials"),
    ("Bearer", "malformed_credentials"),
    ("Bearer not.a.jwt", "malformed_token"),
])
def test_missing_or_malformed_bearer_is_401(endpoint: str, settings: Settings,
                                            header: str | None, reason: str) -> None:
    headers = {} if header is None else {"authorization": header}
    with nothing_reaches_the_bus(settings, MARKER):
        body = problem(product(endpoint, headers), 401)
    assert body["reason"] in (reason, "malformed_bearer", "malformed_token",
                              "malformed_credentials")


def test_every_forged_or_invalid_token_is_401_and_never_reaches_the_bus(
    endpoint: str, settings: Settings
) -> None:
    forged = _forged_tokens(settings)
    with nothing_reaches_the_bus(settings, MARKER):
        answers = {name: product(endpoint, {"authorization": f"Bearer {value}"})
                   for name, value in forged.items()}
    for name, response in answers.items():
        body = problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer"), name
        assert "mallory" not in response.text, name  # no claim is echoed
        assert body["reason"] != "", name


def test_a_token_without_the_scope_is_403_insufficient_scope(endpoint: str,
                                                             settings: Settings) -> None:
    with nothing_reaches_the_bus(settings, MARKER):
        response = product(endpoint, {"authorization":
                                      f"Bearer {token(settings, scope='reports:write')}"})
    assert problem(response, 403)["reason"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def partner_order(endpoint: str, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"x-api-key": key}
    order = {**ORDER, "customer": MARKER}
    return httpx.post(f"{endpoint}/v1/partner/orders", json=order, headers=headers, timeout=30)


def test_api_key_route_accepts_a_live_key(endpoint: str, settings: Settings) -> None:
    key, _ = issue_key(settings)
    response = httpx.post(f"{endpoint}/v1/partner/orders", json=ORDER,
                          headers={"x-api-key": key}, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json()["customer"] == "e2e-key-order"


def test_every_bad_api_key_is_refused_and_never_reaches_the_bus(endpoint: str,
                                                                 settings: Settings) -> None:
    key, key_id = issue_key(settings)
    keys_cli.revoke_command(settings, lambda _: None, key_id)
    unknown = "mgk_0123456789abcdef." + "A" * 43
    with nothing_reaches_the_bus(settings, MARKER):
        missing = partner_order(endpoint, None)
        malformed = partner_order(endpoint, "not-a-key")
        wrong = partner_order(endpoint, unknown)
        tampered = partner_order(endpoint, key[:-2] + ("AA" if not key.endswith("AA") else "BB"))
        revoked = partner_order(endpoint, key)
    assert problem(missing, 401)["reason"] == "missing_credentials"
    assert problem(malformed, 401)["reason"] == "malformed_api_key"
    assert problem(wrong, 401)["reason"] == "invalid_api_key"
    assert problem(tampered, 401)["reason"] == "invalid_api_key"
    assert problem(revoked, 403)["reason"] == "revoked_api_key"
