"""The gateway handler invoked with a recorded API Gateway v2 event: in this process (real
Kafka, real worker) and through the emulator's Lambda Invoke API."""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.deploy import aws as deploy
from infra.deploy.gateway_env import resolved_gateway_environment
from infra.settings import Settings

pytestmark = pytest.mark.e2e
EVENT = Path(__file__).resolve().parent.parent / "events" / "apigw_v2_post_orders.json"


def recorded_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    return event


def test_handler_in_process_with_recorded_event(
    endpoint: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment the deployed function gets, built by the same code as the template.
    env = resolved_gateway_environment(settings)
    for name, value in env.items():
        # Not the OTEL_* ones: the handler would install a global tracer provider in this
        # test process, which OpenTelemetry cannot undo for the tests that follow.
        if not name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    from functions.gateway import handler as gateway

    try:
        response = gateway.handler(recorded_event(), None)
        again = gateway.handler(recorded_event(), None)  # warm: same clients, same loop
    finally:
        asyncio.get_event_loop().run_until_complete(gateway.app.state.mesh.close())
    assert response["statusCode"] == 201, response
    body = json.loads(response["body"])
    assert Decimal(body["total"]) == Decimal("7.50")
    assert body["customer"] == "recorded"
    assert again["statusCode"] == 201
    assert json.loads(again["body"])["order_id"] != body["order_id"]


def test_deployed_function_invoked_directly(endpoint: str, settings: Settings) -> None:
    outputs = deploy.stack_outputs(settings)
    assert outputs is not None
    lam = deploy.client(settings, "lambda")
    result = lam.invoke(FunctionName=outputs["GatewayFunctionName"],
                        Payload=json.dumps(recorded_event()).encode())
    payload = json.loads(result["Payload"].read())
    assert payload["statusCode"] == 201, payload
    assert Decimal(json.loads(payload["body"])["total"]) == Decimal("7.50")


FRESH_INSTANCE = """
import asyncio, json, sys
from functions.gateway import handler as gateway
event = json.load(open(sys.argv[1]))
try:
    response = gateway.handler(event, None)
finally:
    asyncio.get_event_loop().run_until_complete(gateway.app.state.mesh.close())
print(json.dumps({"status": response["statusCode"], "botocore": sorted(
    m for m in sys.modules if m.startswith(("botocore.session", "botocore.client"))),
    "unused": sorted(m for m in sys.modules if m.startswith(UNUSED))}))
"""
# What a deployed instance's first request must not import (each a measured cold-start
# cost): PyJWT and cryptography's x509 (its JWT routes are verified without them), and
# cryptography's key serialization (ssh, ciphers, dh: ~3.7 ms), which only a PEM key needs;
# `meshgate` deploys raw keys.
UNUSED = ("jwt", "cryptography.x509", "cryptography.hazmat.primitives.serialization")


def test_a_fresh_instance_answers_without_a_botocore_session(
        endpoint: str, settings: Settings) -> None:
    """A new gateway instance with the deployed environment, its first request end to end
    (its keys from Secrets Manager and SSM, its rate limit in DynamoDB, the order over
    Kafka): every AWS call it makes goes without botocore's session, whose import was ~45 ms
    of each cold start (issue 15), and nothing in :data:`UNUSED` is imported."""
    import subprocess
    import sys

    env = {name: value for name, value in resolved_gateway_environment(settings).items()
           if not name.startswith("OTEL_")}
    env.update(PATH=os.environ.get("PATH", ""), HOME=os.environ.get("HOME", "/root"),
               AWS_LAMBDA_FUNCTION_NAME="gateway-fresh-instance")
    probe = f"UNUSED = {UNUSED!r}\n{FRESH_INSTANCE}"
    done = subprocess.run([sys.executable, "-c", probe, str(EVENT)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"status": 201, "botocore": [], "unused": []}, done.stderr[-3000:]
