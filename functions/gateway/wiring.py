"""Builds the deployed edge from its environment: the bundled policy, the JWT verifier of
``edge.jwt``, the DynamoDB stores named by ``MESH_*_TABLE``, and the lazily created mesh
client. Explicit arguments win over the environment, which wins over defaults."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from bus.config import BusSettings
from bus.errors import MeshError
from bus.policy.edge import JwtSettings
from bus.policy.model import Policy
from bus.runtime.client import MeshClient
from bus.traffic.table import TrafficReloader, TrafficTable
from functions.errors import ConfigError
from functions.gateway.app import ClientFactory, EdgeDeps, LazyMeshClient, create_app
from functions.gateway.guard import EdgeGuard
from functions.shared.kafka_connect import kafka_transport
from functions.shared.key_reload import load_live_identity

if TYPE_CHECKING:  # the JWT verifier's modules load only when a JWT route exists
    from functions.gateway.auth.api_keys import ApiKeyAuthenticator, ApiKeyMatch
    from functions.gateway.auth.jwt_bearer import JwtVerifier

POLICY_BUNDLE = "meshgate-policy.json"
log = logging.getLogger(__name__)


def policy_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("MESH_POLICY_FILE")
    if explicit:
        return Path(explicit)
    return Path(env.get("LAMBDA_TASK_ROOT", ".")) / POLICY_BUNDLE


def load_bundled_policy(env: Mapping[str, str]) -> Policy:
    path = policy_path(env)
    try:
        return Policy.from_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"the edge's policy {path} cannot be read ({exc}); deploy with "
                           "`meshgate deploy` or set MESH_POLICY_FILE") from exc


async def mesh_client() -> MeshClient:
    settings = BusSettings.resolve(service_name="gateway")
    # Reading the key is a blocking AWS call: keep it off the event loop.
    # Its keys follow rotations (functions.shared.key_reload; the handler refreshes them).
    identity = await asyncio.to_thread(load_live_identity, settings)
    table, reloader = TrafficTable(), None
    parameter = os.environ.get("MESH_TRAFFIC_PARAMETER")
    if parameter:  # the policies' traffic rules, reloaded while the instance lives
        from functions.shared.ssm_traffic import SsmTrafficSource

        reloader = TrafficReloader(table, SsmTrafficSource(parameter),
                                   float(os.environ.get("MESH_TRAFFIC_RELOAD_S", "30")))
    return MeshClient(kafka_transport(settings), settings, identity, traffic=table,
                      reloader=reloader)


def jwt_verifier(settings: JwtSettings) -> JwtVerifier:
    from functions.gateway.auth.configured import jwt_verifier as configured  # lazily: JOSE

    return configured(settings)


class LazyApiKeys:
    """The deployed API-key check, built on first use (reading the pepper is an AWS call)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._checker: ApiKeyAuthenticator | None = None
        self._lock = asyncio.Lock()

    async def authenticate(self, presented: str | None) -> ApiKeyMatch:
        if self._checker is None:
            async with self._lock:
                if self._checker is None:
                    self._checker = await self._build()
        return await self._checker.authenticate(presented)

    async def _build(self) -> ApiKeyAuthenticator:
        from functions.gateway.auth.dynamodb_keys import (
            ApiKeyStoreUnavailable,
            authenticator_from_env,
        )

        try:
            checker = await authenticator_from_env(self._env)
        except MeshError as exc:  # the pepper (InvalidKey): missing, unreachable, too short
            log.error("API keys cannot be checked: %r", exc)
            raise ApiKeyStoreUnavailable("API keys cannot be checked now") from exc
        if checker is None:
            raise ApiKeyStoreUnavailable("API keys cannot be checked now")
        return checker


def guard_from_env(policy: Policy, env: Mapping[str, str]) -> EdgeGuard:
    routes = policy.routes
    jwt = None
    if policy.edge is not None and policy.edge.jwt is not None and any(
            r.auth == "jwt" for r in routes):
        jwt = jwt_verifier(policy.edge.jwt)
    limiter = None
    table = env.get("MESH_RATE_LIMIT_TABLE")
    # The async status route is always rate limited (edge.status_rate_limit).
    if table and any(r.rate_limit is not None or r.auth == "api_key" or r.mode == "async"
                     for r in routes):
        from functions.gateway.ratelimit.dynamodb import DynamoDBRateLimitStore
        from functions.gateway.ratelimit.leased import LeasedRateLimitStore

        # Tokens leased a few at a time: one conditional write per lease (issue 15).
        limiter = LeasedRateLimitStore(DynamoDBRateLimitStore(table))
    api_keys, quota = None, None
    if env.get("MESH_API_KEYS_TABLE") and any(r.auth == "api_key" for r in routes):
        api_keys = LazyApiKeys(env)
        if table:
            from functions.gateway.ratelimit.quota import DynamoDBQuotaStore

            quota = DynamoDBQuotaStore(table)
    return EdgeGuard(jwt=jwt, api_keys=api_keys, limiter=limiter, quota=quota,
                     trust_authorizer=env.get("MESH_TRUST_AUTHORIZER") == "1")


def build_app(env: Mapping[str, str] | None = None, policy: Policy | None = None, *,
              mesh_factory: ClientFactory | None = None,
              guard: EdgeGuard | None = None) -> FastAPI:
    """The edge of ``policy`` (default: the bundled one). ``mesh_factory`` and ``guard``
    replace what the environment would build (tests and benchmarks pass in-memory ones)."""
    env = os.environ if env is None else env
    policy = load_bundled_policy(env) if policy is None else policy
    operations = None
    if any(route.mode == "async" for route in policy.routes):
        from functions.shared.operations_store import operations_store_from_env

        operations = operations_store_from_env(env)
    deps = EdgeDeps(mesh=LazyMeshClient(mesh_factory or mesh_client),
                    guard=guard or guard_from_env(policy, env), operations=operations)
    return create_app(policy, deps)
