"""The edge app's authentication on the project policy's routes: the JWT route
(GET /v1/products/{sku}, scope catalog:read) and the API-key route (POST /v1/partner/orders).

Every refusal is 401/403 problem+json, with ``WWW-Authenticate`` as RFC 6750 says for bearer
tokens, and nothing reaches the bus. An accepted caller's principal travels, signed with the
gateway's Ed25519 key, to the handler (``bus.context.caller_principal()``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bus.security.signing import BadSignature, verify
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app
from functions.gateway.auth.api_keys import ApiKeyAuthenticator, ApiKeyHasher, InMemoryApiKeyStore
from functions.gateway.auth.principal import Principal
from functions.gateway.guard import EdgeGuard
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from tests.unit.edge_support import (
    ISSUER,
    ORDER,
    PARTNER_ORDERS,
    PEPPER,
    PROJECT,
    Edge,
    assert_problem,
    b64url,
    bearer,
    claims,
    edge,
    hs256_with_public_key,
    jwt_verifier,
    route,
    token,
    unsigned_token,
)

PRODUCT_URL = "/v1/products/sku-1"


def _now() -> int:
    return int(time.time())


@pytest.fixture(scope="module")
def gw() -> Iterator[Edge]:
    with edge() as state:
        yield state


@pytest.fixture(autouse=True)
def _clean(gw: Edge) -> None:
    gw.handlers.seen.clear()


def _nothing_on_the_bus(gw: Edge, before: dict[str, int]) -> None:
    assert gw.produced() == before
    assert gw.handlers.seen == []


# --- the JWT route ---------------------------------------------------------------------------

def _tampered() -> str:
    """A genuine token whose claims were swapped after signing."""
    header, _, signature = token().split(".")
    return f"{header}.{b64url(json.dumps(claims(sub='admin')).encode())}.{signature}"


BAD_BEARERS: list[tuple[str, Callable[[], str | None], str, str]] = [
    # (case, Authorization value made when the case runs, reason, WWW-Authenticate). Made at
    # collection, a token meant to be refused for its issuer had expired before a long run
    # reached it, and was refused for that instead.
    ("missing", lambda: None, "missing_credentials", "Bearer"),
    ("empty", lambda: "", "missing_credentials", "Bearer"),
    ("basic scheme", lambda: "Basic dXNlcjpwYXNz", "malformed_credentials",
     'Bearer error="invalid_token"'),
    ("no token", lambda: "Bearer", "malformed_credentials", 'Bearer error="invalid_token"'),
    ("garbage", lambda: "Bearer not-a-jwt", "malformed_token", 'Bearer error="invalid_token"'),
    ("garbage jws", lambda: "Bearer abc.def.ghi", "malformed_token",
     'Bearer error="invalid_token"'),
    ("expired", lambda: f"Bearer {token(claims(exp=_now() - 3600, iat=_now() - 7200))}",
     "token_expired", 'Bearer error="invalid_token"'),
    ("not yet valid", lambda: f"Bearer {token(claims(nbf=_now() + 3600))}",
     "token_not_yet_valid", 'Bearer error="invalid_token"'),
    ("wrong issuer", lambda: f"Bearer {token(claims(iss='https://evil.example'))}",
     "wrong_issuer", 'Bearer error="invalid_token"'),
    ("wrong audience", lambda: f"Bearer {token(claims(aud='someone-else'))}", "wrong_audience",
     'Bearer error="invalid_token"'),
    ("alg none", lambda: f"Bearer {unsigned_token({'alg': 'none', 'typ': 'JWT'}, claims())}",
     "algorithm_not_allowed", 'Bearer error="invalid_token"'),
    ("HS256 with the public key", lambda: f"Bearer {hs256_with_public_key(claims())}",
     "algorithm_not_allowed", 'Bearer error="invalid_token"'),
    ("unknown kid", lambda: f"Bearer {token(kid='rotated-out-key')}", "unknown_key",
     'Bearer error="invalid_token"'),
    ("no subject", lambda: f"Bearer {token(claims(sub=None))}", "missing_claim",
     'Bearer error="invalid_token"'),
    ("tampered claims", lambda: f"Bearer {_tampered()}", "bad_signature",
     'Bearer error="invalid_token"'),
]


@pytest.mark.parametrize(("case", "make_authorization", "reason", "challenge"), BAD_BEARERS,
                         ids=[case[0] for case in BAD_BEARERS])
def test_jwt_route_refuses_with_401_and_a_bearer_challenge(
        gw: Edge, case: str, make_authorization: Callable[[], str | None], reason: str,
        challenge: str) -> None:
    authorization = make_authorization()
    before = gw.produced()
    headers = {} if authorization is None else {"authorization": authorization}
    response = gw.http.get(PRODUCT_URL, headers=headers)
    body = assert_problem(response, 401, reason)
    assert response.headers["www-authenticate"] == challenge
    if authorization:  # nothing of the credentials comes back
        for part in filter(None, authorization.split(" ", 1)[-1].split(".")):
            assert part not in response.text
    _nothing_on_the_bus(gw, before)
    assert "user-42" not in json.dumps(body)


def test_missing_scope_is_403_insufficient_scope(gw: Edge) -> None:
    before = gw.produced()
    response = gw.http.get(PRODUCT_URL, headers=bearer(claims(scope="orders:write")))
    body = assert_problem(response, 403, "insufficient_scope")
    assert "catalog:read" in body["detail"]
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    _nothing_on_the_bus(gw, before)


def test_scope_in_scp_list_is_accepted(gw: Edge) -> None:
    response = gw.http.get(PRODUCT_URL, headers=bearer(claims(scope=None, scp=["catalog:read"])))
    assert response.status_code == 200, response.text


def test_valid_token_passes_and_reaches_both_parts(gw: Edge) -> None:
    before = sum(gw.produced().values())
    response = gw.http.get(PRODUCT_URL, headers=bearer())
    assert response.status_code == 200, response.text
    assert "www-authenticate" not in response.headers
    assert sorted(s.operation for s in gw.handlers.seen) == ["inventory.stock", "orders.quote"]
    assert sum(gw.produced().values()) > before


# --- the API-key route -----------------------------------------------------------------------

WELL_FORMED_UNKNOWN = "mgk_0123456789abcdef." + "A" * 43


@pytest.mark.parametrize(("presented", "reason"), [
    (None, "missing_credentials"),
    ("   ", "missing_credentials"),
    ("hello", "malformed_api_key"),
    ("Bearer mgk_0123456789abcdef.x", "malformed_api_key"),
    ("mgk_ZZZZ.secretsecretsecretsecret", "malformed_api_key"),
    (WELL_FORMED_UNKNOWN, "invalid_api_key"),
], ids=["missing", "blank", "malformed", "bearer-ish", "bad-id", "unknown"])
def test_api_key_route_refuses_with_401(gw: Edge, presented: str | None, reason: str) -> None:
    before = gw.produced()
    headers = {} if presented is None else {"x-api-key": presented}
    response = gw.http.post(PARTNER_ORDERS, json=ORDER, headers=headers)
    assert_problem(response, 401, reason)
    # RFC 9110: every 401 names a way to authenticate; for keys, the header to send
    assert response.headers["www-authenticate"] == 'ApiKey realm="meshgate", header="x-api-key"'
    if presented and presented.strip():
        assert presented.strip() not in response.text
    _nothing_on_the_bus(gw, before)


def test_wrong_secret_of_a_known_key_is_401(gw: Edge) -> None:
    before = gw.produced()
    key_id_part, _, secret = gw.partner_key.partition(".")
    forged = f"{key_id_part}.{secret[::-1]}"
    response = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": forged})
    assert_problem(response, 401, "invalid_api_key")
    _nothing_on_the_bus(gw, before)


def test_revoked_key_is_403(gw: Edge) -> None:
    key, key_id = gw.issue_key("partner-gone")
    assert gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": key}).status_code == 201
    gw.handlers.seen.clear()
    gw.revoke(key_id)
    before = gw.produced()
    response = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": key})
    assert_problem(response, 403, "revoked_api_key")
    assert "www-authenticate" not in response.headers
    _nothing_on_the_bus(gw, before)


def test_a_bearer_token_does_not_open_the_api_key_route(gw: Edge) -> None:
    before = gw.produced()
    response = gw.http.post(PARTNER_ORDERS, json=ORDER, headers=bearer())
    assert_problem(response, 401, "missing_credentials")
    _nothing_on_the_bus(gw, before)


def test_an_api_key_does_not_open_the_jwt_route(gw: Edge) -> None:
    before = gw.produced()
    response = gw.http.get(PRODUCT_URL, headers={"x-api-key": gw.partner_key})
    assert_problem(response, 401, "missing_credentials")
    _nothing_on_the_bus(gw, before)


# --- the principal travels, signed -----------------------------------------------------------


def test_jwt_principal_reaches_every_part_and_is_signed(gw: Edge) -> None:
    response = gw.http.get(PRODUCT_URL, headers=bearer(claims(
        sub="auth0|ada", scope="catalog:read extra:scope", email="ada@example.test")))
    assert response.status_code == 200, response.text
    expected = {"sub": "auth0|ada", "method": "jwt", "iss": ISSUER,
                "scopes": ["catalog:read", "extra:scope"],
                "claims": {"email": "ada@example.test"}}
    assert len(gw.handlers.seen) == 2
    for seen in gw.handlers.seen:
        assert seen.principal == expected
        assert seen.source == "gateway"
    # On the wire: signed by the gateway's key, and the signature covers the principal.
    [stock] = gw.requests("inventory.requests")[-1:]
    assert json.loads(stock.principal or "") == expected
    verify(stock, "inventory.requests", gw.identities.keyring)
    forged = dataclasses.replace(stock, principal=json.dumps({**expected, "sub": "root"}))
    with pytest.raises(BadSignature):
        verify(forged, "inventory.requests", gw.identities.keyring)
    assert all(w.quarantined == 0 for w in gw.workers)


def test_jwt_principal_carries_only_the_configured_claims(gw: Edge) -> None:
    assert gw.http.get(PRODUCT_URL, headers=bearer(claims(
        jti="t-1", azp="web", groups=["admins"]))).status_code == 200
    principal = gw.handlers.seen[0].principal
    assert principal is not None
    assert principal["claims"] == {"email": "ada@example.test"}
    assert set(principal) == {"sub", "method", "iss", "scopes", "claims"}


def test_api_key_principal_reaches_the_handler_and_is_signed(gw: Edge) -> None:
    response = gw.http.post(PARTNER_ORDERS, json=ORDER, headers={"x-api-key": gw.partner_key})
    assert response.status_code == 201, response.text
    assert response.json()["customer"] == "alice"
    [seen] = gw.handlers.saw("orders.create")
    assert seen.principal == {"sub": "partner-acme", "method": "api_key",
                              "key_id": gw.partner_key_id}
    assert seen.payload == ORDER
    request = gw.requests()[-1]
    verify(request, "orders.requests", gw.identities.keyring)
    assert Principal.from_json(request.principal or "").key_id == gw.partner_key_id
    assert gw.partner_key not in (request.principal or "")


def test_anonymous_route_carries_no_principal(gw: Edge) -> None:
    assert gw.http.post("/v1/orders", json=ORDER).status_code == 201
    [seen] = gw.handlers.saw("orders.create")
    assert seen.principal is None


async def _never() -> Any:
    raise AssertionError("no mesh client is built")


def _keys() -> ApiKeyAuthenticator:
    return ApiKeyAuthenticator(InMemoryApiKeyStore(), ApiKeyHasher(PEPPER))


@pytest.mark.parametrize(("guard", "complaint"), [
    (lambda: EdgeGuard(jwt=None, api_keys=_keys(), limiter=InMemoryRateLimitStore()),
     "edge.jwt"),
    (lambda: EdgeGuard(jwt=jwt_verifier(), api_keys=None, limiter=InMemoryRateLimitStore()),
     "key store"),
    # Without a limiter the API key's usage plan (and its daily quota) would silently not be
    # enforced: the edge must refuse to start rather than fail open.
    (lambda: EdgeGuard(jwt=jwt_verifier(), api_keys=_keys(), limiter=None), "usage plan"),
], ids=["no-jwt", "no-keys", "no-limiter-for-plans"])
def test_edge_missing_what_a_route_needs_refuses_to_build(
        guard: Callable[[], EdgeGuard], complaint: str) -> None:
    only_partner = PROJECT.model_copy(update={"routes": (route(PARTNER_ORDERS),
                                                         route("/v1/products/{sku}"))})
    with pytest.raises(ValueError, match=complaint):
        create_app(only_partner, EdgeDeps(mesh=LazyMeshClient(_never), guard=guard()))
