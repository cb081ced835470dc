"""functions.authorizer: the Lambda authorizer's decisions, in process (in-memory key store,
an inline key set), and the gateway reading the principal back from the v2 event."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from functions.authorizer import handler as authorizer_handler
from functions.authorizer.authorize import Authorizer, AuthorizerUnavailable
from functions.gateway.auth import Principal
from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    ApiKeyRecord,
    InMemoryApiKeyStore,
    UsagePlan,
    issue_api_key,
)
from functions.gateway.auth.authorizer_context import (
    plan_from_authorizer,
    principal_from_authorizer,
)
from functions.gateway.auth.dynamodb_keys import ApiKeyStoreUnavailable
from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier

ISSUER, AUDIENCE, KID = "https://issuer.test", "meshgate", "test-ec-1"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
JWKS = {"keys": [{**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": KID,
                  "alg": "ES256", "use": "sig"}]}
PLAN = UsagePlan(rate_per_s=5.0, burst=10, daily_quota=1000)
HASHER = ApiKeyHasher(b"unit-test-pepper-0123456789abcdef")


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now,
              "scope": "orders:write", "email": "alice@example.test", **overrides}
    return jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": KID})


def event(headers: dict[str, str]) -> dict[str, Any]:
    return {"version": "2.0", "type": "REQUEST", "routeKey": "$default", "rawPath": "/v1/x",
            "headers": headers, "requestContext": {"http": {"method": "GET"}}}


def verifier() -> JwtVerifier:
    return JwtVerifier(JwksCache(StaticJwks(JWKS)), issuer=ISSUER, audience=AUDIENCE,
                       algorithms=["ES256"], carried_claims=["email"])


@pytest.fixture
async def keys() -> tuple[Authorizer, InMemoryApiKeyStore, str, ApiKeyRecord]:
    store = InMemoryApiKeyStore()
    key, record = await issue_api_key(store, HASHER, owner="team-a", plan=PLAN)
    return Authorizer(jwt=verifier(), api_keys=ApiKeyAuthenticator(store, HASHER)), store, key, \
        record


Keys = tuple[Authorizer, InMemoryApiKeyStore, str, ApiKeyRecord]


async def test_valid_api_key_is_allowed_with_principal_and_plan(keys: Keys) -> None:
    authorizer, _, key, record = keys
    answer = await authorizer.authorize(event({"x-api-key": key}))
    assert answer["isAuthorized"] is True
    context = answer["context"]
    assert all(isinstance(v, str | int | float | bool) for v in context.values())
    principal = Principal.from_json(context["principal"])
    assert principal == record.principal()
    assert json.loads(context["plan"]) == {"rate_per_s": 5.0, "burst": 10, "daily_quota": 1000}
    assert key not in json.dumps(answer)  # the key never travels on
    # What the gateway behind the authorizer receives, and reads back:
    gateway_event = {"requestContext": {"authorizer": {"lambda": context}}}
    assert principal_from_authorizer(gateway_event) == principal
    assert plan_from_authorizer(gateway_event) == {"rate_per_s": 5.0, "burst": 10,
                                                   "daily_quota": 1000}


@pytest.mark.parametrize(("headers", "reason"), [
    ({"x-api-key": "   "}, "missing_credentials"),
    ({"x-api-key": "not-a-key"}, "malformed_api_key"),
    ({"x-api-key": "mgk_0123456789abcdef." + "A" * 43}, "invalid_api_key"),
    ({"authorization": "Basic dXNlcjpwdw=="}, "malformed_credentials"),
    ({"authorization": "Bearer x.y.z", "x-api-key": "k"}, "ambiguous_credentials"),
])
async def test_refusals_say_why(keys: Keys, headers: dict[str, str], reason: str) -> None:
    answer = await keys[0].authorize(event(headers))
    assert answer == {"isAuthorized": False,
                      "context": {"reason": reason, "status": 401}}


async def test_no_credentials_pass_as_anonymous_for_the_gateway_to_judge(keys: Keys) -> None:
    answer = await keys[0].authorize(event({}))
    assert answer == {"isAuthorized": True, "context": {"anonymous": "true"}}
    gateway_event = {"requestContext": {"authorizer": {"lambda": answer["context"]}}}
    assert principal_from_authorizer(gateway_event) is None


async def test_revoked_key_is_refused(keys: Keys) -> None:
    authorizer, store, key, record = keys
    assert await store.revoke(record.key_id)
    answer = await authorizer.authorize(event({"x-api-key": key}))
    assert answer["isAuthorized"] is False
    assert answer["context"] == {"reason": "revoked_api_key", "status": 403}


async def test_a_key_issued_under_another_pepper_is_refused(keys: Keys) -> None:
    authorizer, store, _, _ = keys
    other, _ = await issue_api_key(store, ApiKeyHasher(b"another-pepper-0123456789abcdef"),
                                   owner="x", plan=PLAN)
    answer = await authorizer.authorize(event({"x-api-key": other}))
    assert answer["context"]["reason"] == "invalid_api_key"


async def test_valid_jwt_is_allowed_with_claims(keys: Keys) -> None:
    answer = await keys[0].authorize(event({"authorization": f"Bearer {token()}"}))
    assert answer["isAuthorized"] is True
    principal = Principal.from_json(answer["context"]["principal"])
    assert principal.subject == "alice"
    assert principal.method == "jwt"
    assert principal.issuer == ISSUER
    assert principal.has_scope("orders:write")
    assert principal.claims["email"] == "alice@example.test"
    assert "plan" not in answer["context"]


@pytest.mark.parametrize(("claims", "reason"), [
    ({"exp": int(time.time()) - 3600}, "token_expired"),
    ({"aud": "someone-else"}, "wrong_audience"),
    ({"iss": "https://evil.test"}, "wrong_issuer"),
])
async def test_invalid_jwts_are_refused(keys: Keys, claims: dict[str, Any], reason: str) -> None:
    answer = await keys[0].authorize(event({"authorization": f"Bearer {token(**claims)}"}))
    assert answer == {"isAuthorized": False, "context": {"reason": reason, "status": 401}}


async def test_a_credential_kind_not_configured_is_refused() -> None:
    only_jwt = Authorizer(jwt=verifier(), api_keys=None)
    answer = await only_jwt.authorize(event({"x-api-key": "mgk_0123456789abcdef." + "A" * 43}))
    assert answer["context"]["reason"] == "api_keys_not_accepted"
    no_jwt = Authorizer(jwt=None, api_keys=None)
    answer = await no_jwt.authorize(event({"authorization": f"Bearer {token()}"}))
    assert answer["context"]["reason"] == "jwt_not_accepted"


class DownStore(InMemoryApiKeyStore):
    async def get(self, key_id: str) -> ApiKeyRecord | None:
        raise ApiKeyStoreUnavailable("the API key cannot be checked right now", detail="boom")


async def test_a_store_outage_is_an_error_not_a_denial(keys: Keys) -> None:
    _, _, key, _ = keys
    authorizer = Authorizer(jwt=None, api_keys=ApiKeyAuthenticator(DownStore(), HASHER))
    with pytest.raises(AuthorizerUnavailable) as caught:
        await authorizer.authorize(event({"x-api-key": key}))
    assert caught.value.retriable
    assert caught.value.reason == "api_key_store_unavailable"


def test_principal_from_an_event_without_authorizer() -> None:
    assert principal_from_authorizer({}) is None
    assert principal_from_authorizer({"requestContext": {"authorizer": {"jwt": {}}}}) is None
    assert plan_from_authorizer({"requestContext": {}}) is None


def test_a_malformed_authorizer_principal_is_a_deployment_fault() -> None:
    for bad in ("{not json", json.dumps({"sub": "a"}), 42):
        with pytest.raises(ValueError, match="principal"):
            principal_from_authorizer(
                {"requestContext": {"authorizer": {"lambda": {"principal": bad}}}})


def test_handler_runtime_from_a_bundled_policy(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    policy = {"edge": {"jwt": {"issuer": ISSUER, "audience": [AUDIENCE],
                               "algorithms": ["ES256"], "jwks": JWKS, "claims": ["email"]}}}
    (tmp_path / "meshgate-policy.json").write_text(json.dumps(policy))
    env = {"LAMBDA_TASK_ROOT": str(tmp_path)}  # no API-keys table: JWT only
    runtime = authorizer_handler.Runtime(env)
    try:
        assert runtime.authorizer.api_keys is None
        allowed = runtime.handle(event({"authorization": f"Bearer {token()}"}))
        assert allowed["isAuthorized"] is True
        denied = runtime.handle(event({"authorization": "Bearer x.y.z"}))
        assert denied["isAuthorized"] is False
        assert runtime.handle(event({}))["context"] == {"anonymous": "true"}
    finally:
        runtime.loop.close()


def test_handler_runtime_refuses_a_missing_policy(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="cannot be read"):
        authorizer_handler.Runtime({"MESH_POLICY_FILE": str(tmp_path / "none.json")})
