"""The stores' errors on the REAL AWS emulator (issue 12): the adapters translate what
DynamoDB, Secrets Manager and SSM answer into the package's errors, retriable by the cause
(a missing table or secret: not; an endpoint that does not answer: yes), and the edge guard
fails closed on them with 503, never a free pass."""

from __future__ import annotations

import uuid
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

from bus.policy.model import Route
from bus.security.keys import InvalidKey
from bus.traffic.table import TrafficSourceError
from functions.gateway.auth.api_keys import UsagePlan
from functions.gateway.auth.principal import Principal
from functions.gateway.guard import Caller, EdgeGuard
from functions.gateway.problems import EdgeRefusal
from functions.gateway.ratelimit.dynamodb import DynamoDBRateLimitStore, RateLimitRefused
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from functions.gateway.ratelimit.quota import DynamoDBQuotaStore
from functions.shared.secrets import SecretsManagerSource
from functions.shared.ssm_traffic import SsmTrafficSource
from infra.settings import Settings
from proof.procs import free_port
from tests.unit.edge_support import ORDERS, route

pytestmark = pytest.mark.integration

ANONYMOUS = Caller(None, None, "198.51.100.9")
KEYED = Caller(Principal(subject="partner", method="api_key", key_id="0123456789abcdef"),
               UsagePlan(rate_per_s=100, burst=100, daily_quota=1000), "198.51.100.9")


def _missing() -> str:
    return f"itest-no-such-{uuid.uuid4().hex[:10]}"


def _unreachable(settings: Settings) -> dict[str, Any]:
    return {**settings.aws_client_args(), "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "config": Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})}


def _orders() -> Route:
    return route(ORDERS)


async def _refused_503(guard: EdgeGuard, caller: Caller) -> EdgeRefusal:
    with pytest.raises(EdgeRefusal) as raised:
        await guard.admit(_orders(), caller)
    assert (raised.value.status, raised.value.reason) == (503, "ratelimit_unavailable")
    assert raised.value.headers == {"Retry-After": "1"}
    return raised.value


async def test_a_missing_rate_limit_table_fails_closed_with_503(infra_settings: Settings) -> None:
    store = DynamoDBRateLimitStore(_missing(), client_args=infra_settings.aws_client_args())
    refusal = await _refused_503(EdgeGuard(limiter=store), ANONYMOUS)
    assert isinstance(refusal.__cause__, RateLimitRefused)
    assert refusal.__cause__.retriable is False


async def test_an_unreachable_rate_limit_store_fails_closed_with_503(
        infra_settings: Settings) -> None:
    store = DynamoDBRateLimitStore("any", client_args=_unreachable(infra_settings))
    refusal = await _refused_503(EdgeGuard(limiter=store), ANONYMOUS)
    assert refusal.__cause__ is not None
    assert getattr(refusal.__cause__, "retriable", None) is True


async def test_a_missing_quota_table_fails_closed_with_503(infra_settings: Settings) -> None:
    quota = DynamoDBQuotaStore(_missing(), client_args=infra_settings.aws_client_args())
    guard = EdgeGuard(limiter=InMemoryRateLimitStore(), quota=quota)
    refusal = await _refused_503(guard, KEYED)
    assert isinstance(refusal.__cause__, RateLimitRefused)


def test_a_missing_secret_is_not_retriable(infra_settings: Settings) -> None:
    client = botocore.session.get_session().create_client(
        "secretsmanager", **infra_settings.aws_client_args())
    with pytest.raises(InvalidKey) as raised:
        SecretsManagerSource(client=client).get(_missing())
    assert raised.value.retriable is False


def test_an_unreachable_secrets_manager_is_retriable(infra_settings: Settings) -> None:
    client = botocore.session.get_session().create_client(
        "secretsmanager", **_unreachable(infra_settings))
    with pytest.raises(InvalidKey) as raised:
        SecretsManagerSource(client=client).get("any")
    assert raised.value.retriable is True


def test_a_missing_traffic_parameter_is_not_retriable(infra_settings: Settings) -> None:
    source = SsmTrafficSource(f"/itest/{_missing()}", infra_settings.region)
    source._client = botocore.session.get_session().create_client(
        "ssm", **infra_settings.aws_client_args())
    with pytest.raises(TrafficSourceError) as raised:
        source.load()
    assert raised.value.retriable is False
