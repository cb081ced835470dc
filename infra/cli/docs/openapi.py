"""The edge's OpenAPI document, exactly as the deployed gateway serves it at
``/openapi.json``: the app is built from the policy by ``create_app`` with stand-in
dependencies that are never called (no network, no AWS, no broker)."""

from __future__ import annotations

from typing import Any

from bus.policy.model import Policy
from bus.runtime.client import MeshClient
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app
from functions.gateway.auth.api_keys import ApiKeyMatch
from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.guard import EdgeGuard
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from functions.shared.operations_store import InMemoryOperationsStore


class _NoApiKeys:
    async def authenticate(self, presented: str | None) -> ApiKeyMatch:
        raise RuntimeError("the documentation app serves no request")


async def _no_mesh() -> MeshClient:
    raise RuntimeError("the documentation app serves no request")


def _guard(policy: Policy) -> EdgeGuard:
    jwt = None
    if policy.edge is not None and policy.edge.jwt is not None:
        settings = policy.edge.jwt
        jwt = JwtVerifier(JwksCache(StaticJwks({"keys": []}), ttl_s=settings.jwks_refresh_s),
                          issuer=settings.issuer, audience=settings.audience,
                          algorithms=settings.algorithms, leeway_s=settings.leeway_s,
                          carried_claims=settings.claims)
    return EdgeGuard(jwt=jwt, api_keys=_NoApiKeys(), limiter=InMemoryRateLimitStore())


def openapi_document(policy: Policy) -> dict[str, Any]:
    """``GET /openapi.json`` of the edge serving ``policy``; ``ValueError`` when the
    policy's routes cannot make an edge (a JWT route without ``edge.jwt``)."""
    deps = EdgeDeps(mesh=LazyMeshClient(_no_mesh), guard=_guard(policy),
                    operations=InMemoryOperationsStore())
    document: dict[str, Any] = create_app(policy, deps).openapi()
    return document
