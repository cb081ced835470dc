"""The deployed Lambda authorizer, invoked through the emulator's Lambda API with recorded
API Gateway v2 REQUEST authorizer events (tests/events/authorizer_*.json), and the
``meshgate keys`` commands that issue, list and revoke the keys it checks.

The API key is issued by the CLI during the test and put in place of ``{{API_KEY}}``; the
JWT is minted by ``meshgate token`` (the local dev issuer, whose key set the deploy
publishes at the policy's ``edge.jwt.jwks_url``) in place of ``{{TOKEN}}``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from functions.gateway.auth import Principal
from infra.deploy import aws as deploy
from infra.settings import Settings
from tests.support import MESHGATE, run

pytestmark = pytest.mark.e2e
EVENTS = Path(__file__).resolve().parent.parent / "events"


def recorded(name: str, **fill: str) -> dict[str, Any]:
    text = (EVENTS / f"authorizer_{name}.json").read_text()
    for placeholder, value in fill.items():
        text = text.replace("{{" + placeholder + "}}", value)
    event: dict[str, Any] = json.loads(text)
    return event


@pytest.fixture(scope="module")
def invoke(endpoint: str, settings: Settings) -> Any:
    outputs = deploy.stack_outputs(settings)
    assert outputs is not None
    assert "AuthorizerFunctionName" in outputs, "deploy the stack with the authorizer"
    lam = deploy.client(settings, "lambda")

    def call(event: dict[str, Any]) -> dict[str, Any]:
        result = lam.invoke(FunctionName=outputs["AuthorizerFunctionName"],
                            Payload=json.dumps(event).encode())
        payload: dict[str, Any] = json.loads(result["Payload"].read())
        assert "FunctionError" not in result, payload
        return payload

    return call


def meshgate(*args: str) -> tuple[int, str, str]:
    result = run([str(MESHGATE), *args], timeout_s=120)
    return result.returncode, result.stdout, result.stderr


def listed(key_id: str) -> dict[str, Any]:
    code, out, err = meshgate("keys", "list", "--json")
    assert code == 0, err
    [entry] = [k for k in json.loads(out) if k["key_id"] == key_id]
    assert "digest" not in entry
    return dict(entry)


def test_api_key_lifecycle_through_cli_and_authorizer(invoke: Any) -> None:
    owner = f"itest-{uuid.uuid4().hex[:8]}"
    code, out, err = meshgate("keys", "issue", "--owner", owner, "--rate", "5", "--burst", "10",
                              "--quota", "100")
    assert code == 0, err
    lines = out.strip().splitlines()
    key = lines[-1]
    assert key.startswith("mgk_")
    key_id = key[4:20]
    assert key_id in lines[0]
    assert listed(key_id) == {"key_id": key_id, "owner": owner, "revoked": False,
                              "rate_per_s": 5.0, "burst": 10, "daily_quota": 100}

    allowed = invoke(recorded("api_key", API_KEY=key))
    assert allowed["isAuthorized"] is True, allowed
    principal = Principal.from_json(allowed["context"]["principal"])
    assert principal == Principal(subject=owner, method="api_key", key_id=key_id)
    assert json.loads(allowed["context"]["plan"]) == {"rate_per_s": 5.0, "burst": 10,
                                                      "daily_quota": 100}

    code, out, err = meshgate("keys", "revoke", key_id)
    assert code == 0, err
    assert listed(key_id)["revoked"] is True
    revoked = invoke(recorded("api_key", API_KEY=key))
    assert revoked == {"isAuthorized": False,
                       "context": {"reason": "revoked_api_key", "status": 403}}


def test_revoking_an_unknown_key_fails_clearly(endpoint: str) -> None:
    code, _, err = meshgate("keys", "revoke", "00000000deadbeef")
    assert code == 1
    assert "no API key 00000000deadbeef" in err


def test_issue_refuses_a_bad_plan(endpoint: str) -> None:
    code, out, err = meshgate("keys", "issue", "--owner", "x", "--rate", "0", "--burst", "1")
    assert code == 1
    assert "mgk_" not in out
    assert "--rate" in err


@pytest.mark.parametrize(("name", "reason"), [
    ("unknown_key", "invalid_api_key"),
    ("malformed_key", "malformed_api_key"),
])
def test_refused_events(invoke: Any, name: str, reason: str) -> None:
    assert invoke(recorded(name)) == {"isAuthorized": False,
                                      "context": {"reason": reason, "status": 401}}


def test_no_credentials_pass_as_anonymous(invoke: Any) -> None:
    assert invoke(recorded("missing_credentials")) == {"isAuthorized": True,
                                                       "context": {"anonymous": "true"}}


def test_valid_jwt_from_the_dev_issuer(invoke: Any) -> None:
    code, out, err = meshgate("token", "--sub", "alice", "--email", "alice@example.test")
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    answer = invoke(recorded("jwt", TOKEN=token))
    assert answer["isAuthorized"] is True, answer
    principal = Principal.from_json(answer["context"]["principal"])
    assert principal.subject == "alice"
    assert principal.method == "jwt"
    assert principal.claims.get("email") == "alice@example.test"
    tampered = invoke(recorded("jwt", TOKEN=token[:-4] + ("AAAA" if token[-4:] != "AAAA"
                                                          else "BBBB")))
    assert tampered["isAuthorized"] is False
    assert tampered["context"]["status"] == 401
