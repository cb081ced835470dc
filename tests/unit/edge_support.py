"""Shared fixtures of the edge app tests (tests/unit/test_edge_*.py).

The edge is built from the PROJECT policy (policies/*.yaml) with in-memory stores: API keys
(``InMemoryApiKeyStore``), rate limits (``InMemoryRateLimitStore``, optionally on a frozen
clock) and a ``JwtVerifier`` over a ``StaticJwks`` holding a test ES256 key, configured from
the policy's ``edge.jwt`` (issuer, audience, algorithms, carried claims).

The mesh is a ``MemoryBroker`` with the policy's real access map and real Ed25519 identities:
the gateway signs, the ``orders`` and ``inventory`` workers verify before a handler runs.
Workers run in the TestClient's event loop (through its portal), as the broker is not
thread-safe. The in-test handlers record what they saw (payload, ``caller_principal()``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm
from starlette.types import ASGIApp, Receive, Scope, Send

from bus.config import BusSettings
from bus.context import caller_principal
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, from_record
from bus.policy.model import Policy, Route
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, SigningKey, VerifyKey, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Payload, Service
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.gateway.app import EdgeDeps, LazyMeshClient, create_app
from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    InMemoryApiKeyStore,
    UsagePlan,
    issue_api_key,
)
from functions.gateway.auth.jwks import JwksCache, StaticJwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.guard import EdgeGuard, QuotaStore, RateLimitStore
from functions.gateway.ratelimit.bucket import Decision, Limit
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from infra.policy import load_policy

PROJECT: Policy = load_policy(Path(__file__).resolve().parents[2] / "policies")
assert PROJECT.edge is not None
assert PROJECT.edge.jwt is not None
JWT_SETTINGS = PROJECT.edge.jwt
ISSUER = JWT_SETTINGS.issuer
AUDIENCE = JWT_SETTINGS.audience[0]
PROBLEM = "application/problem+json"
ALLOWED_ORIGIN = "http://localhost:3000"
TOPICS = ("orders.requests", "inventory.requests", "mesh.replies", "mesh.async.replies",
          QUARANTINE_TOPIC)
CLIENT_IP_HEADER = "x-test-client-ip"

ORDERS = "/v1/orders"
PARTNER_ORDERS = "/v1/partner/orders"
PRODUCT = "/v1/products/{sku}"
REPORTS = "/v1/reports"

ORDER: dict[str, Any] = {
    "customer": "alice",
    "lines": [
        {"sku": "sku-1", "quantity": 2, "unit_price": "9.99"},
        {"sku": "sku-2", "quantity": 1, "unit_price": "5.00"},
    ],
}

EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KID = "edge-test-es256"
JWKS: dict[str, Any] = {"keys": [{
    **ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True),
    "kid": EC_KID, "alg": "ES256", "use": "sig"}]}
PUBLIC_PEM = EC_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

PEPPER = b"edge-tests-pepper-0123456789abcdef"
PARTNER_PLAN = UsagePlan(rate_per_s=100.0, burst=1000)


def route(path: str, policy: Policy = PROJECT) -> Route:
    [found] = [r for r in policy.routes if r.path == path]
    return found


def with_route(path: str, policy: Policy = PROJECT, **changes: Any) -> Policy:
    """``policy`` with the route at ``path`` changed (validated again, like a loaded one)."""
    routes = tuple(
        Route.model_validate({**r.model_dump(), **changes}) if r.path == path else r
        for r in policy.routes)
    return policy.model_copy(update={"routes": routes})


def with_extra_route(policy: Policy = PROJECT, **fields: Any) -> Policy:
    return policy.model_copy(update={"routes": (*policy.routes, Route.model_validate(fields))})


# --- tokens ----------------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-42", "iat": now, "exp": now + 600,
        "scope": "catalog:read reports:write", "email": "ada@example.test",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def token(payload: dict[str, Any] | None = None, *, kid: str = EC_KID) -> str:
    return jwt.encode(claims() if payload is None else payload, EC_KEY, algorithm="ES256",
                      headers={"kid": kid})


def bearer(payload: dict[str, Any] | None = None, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(payload)}", **headers}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A compact JWS made by hand (PyJWT refuses to make ``alg: none`` with a kid)."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The classic key confusion: HS256 'signed' with the issuer's public key as the secret."""
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": EC_KID}
    signing_input = (f"{b64url(json.dumps(header).encode())}."
                     f"{b64url(json.dumps(payload).encode())}")
    mac = hmac.new(PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def jwt_verifier() -> JwtVerifier:
    """Configured exactly as ``wiring.jwt_verifier`` does from the policy's edge.jwt, but with
    the test key set in place of the URL."""
    return JwtVerifier(JwksCache(StaticJwks(JWKS), ttl_s=JWT_SETTINGS.jwks_refresh_s),
                       issuer=JWT_SETTINGS.issuer, audience=JWT_SETTINGS.audience,
                       algorithms=JWT_SETTINGS.algorithms, leeway_s=JWT_SETTINGS.leeway_s,
                       carried_claims=JWT_SETTINGS.claims)


# --- stores ----------------------------------------------------------------------------------


class FrozenClockLimiter:
    """``InMemoryRateLimitStore`` at a fixed instant (moved by hand), so bursts are exact."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.store = InMemoryRateLimitStore()
        self.now_ms = now_ms
        self.keys: list[str] = []

    async def take(self, key: str, limit: Limit) -> Decision:
        self.keys.append(key)
        return await self.store.take(key, limit, now_ms=self.now_ms)


@dataclass
class OperationRow:
    owner: str
    status: str = "pending"
    result: Any = None
    error: Mapping[str, Any] | None = None


class MemoryOperations:
    """The gateway's ``OperationsStore`` (create/get) in a dict: the project policy has an
    async route, so the app needs one to build."""

    def __init__(self) -> None:
        self.rows: dict[str, OperationRow] = {}

    async def create(self, operation_id: str, *, owner: str, route: str,
                     operation: str, **_: Any) -> None:
        self.rows[operation_id] = OperationRow(owner)

    async def get(self, operation_id: str) -> OperationRow | None:
        return self.rows.get(operation_id)


# --- the mesh --------------------------------------------------------------------------------

Fault = BaseException | Literal["hang"]


@dataclass(frozen=True)
class Seen:
    operation: str
    payload: dict[str, Any]
    principal: dict[str, object] | None
    source: str


@dataclass
class Handlers:
    """In-test handlers of orders.create, orders.quote and inventory.stock: each records what
    it saw, waits its delay (and, if it is one of ``together``, until every one of those has
    been called), then answers, raises its fault, or (``"hang"``) never answers."""

    faults: dict[str, Fault] = field(default_factory=dict)
    delays_s: dict[str, float] = field(default_factory=dict)
    together: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    _all_together: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, operation: str) -> list[Seen]:
        return [s for s in self.seen if s.operation == operation]

    async def _run(self, operation: str, payload: Payload, message: Envelope) -> None:
        self.seen.append(Seen(operation, dict(payload), caller_principal(), message.source))
        if self.together and all(self.saw(other) for other in self.together):
            self._all_together.set()
        await asyncio.sleep(self.delays_s.get(operation, 0))
        if operation in self.together:
            async with asyncio.timeout(30):  # the caller's deadline cuts it far sooner
                await self._all_together.wait()
        fault = self.faults.get(operation)
        if fault == "hang":
            await asyncio.sleep(3600)
        elif isinstance(fault, BaseException):
            raise fault

    def services(self) -> tuple[Service, Service]:
        orders, inventory = Service("orders"), Service("inventory")

        @orders.operation("orders.create")
        async def create(payload: Payload, message: Envelope) -> Payload:
            await self._run("orders.create", payload, message)
            return {"order_id": "ord_0123456789abcdef", "customer": payload["customer"],
                    "total": "24.98", "item_count": len(payload["lines"]),
                    "status": "created", "handled_by": "orders"}

        @orders.operation("orders.quote")
        async def quote(payload: Payload, message: Envelope) -> Payload:
            await self._run("orders.quote", payload, message)
            return {"sku": payload["sku"], "quantity": payload.get("quantity", 1),
                    "total": "12.50"}

        @inventory.operation("inventory.stock")
        async def stock(payload: Payload, message: Envelope) -> Payload:
            await self._run("inventory.stock", payload, message)
            return {"sku": payload["sku"], "available": 7, "warehouse": "ams-1"}

        return orders, inventory


@dataclass(frozen=True)
class Identities:
    """Real Ed25519 identities of gateway, orders and inventory, trusting each other's keys,
    under the project policy's access map."""

    signing: Mapping[str, SigningKey]
    verify: Mapping[str, VerifyKey]
    keyring: KeyRing
    access: AccessPolicy

    @classmethod
    def generate(cls, policy: Policy = PROJECT) -> Identities:
        pairs = {name: generate_ed25519(name) for name in ("gateway", "orders", "inventory")}
        keyring = KeyRing(verify for _, verify in pairs.values())
        access = AccessPolicy.from_dict(policy.produce_map(), policy.consume_map(),
                                        edges=policy.edges())
        return cls({n: p[0] for n, p in pairs.items()}, {n: p[1] for n, p in pairs.items()},
                   keyring, access)

    def of(self, service: str) -> Identity:
        return Identity(service, self.signing[service], self.keyring, self.access)


class ClientIpFromHeader:
    """Sets the ASGI client address from a test header, so tests can speak from several IPs
    (what API Gateway's source IP is to the deployed edge)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == CLIENT_IP_HEADER.encode():
                    scope = {**scope, "client": (value.decode(), 50000)}
        await self.app(scope, receive, send)


@dataclass
class Edge:
    http: TestClient
    app: FastAPI
    broker: MemoryBroker
    handlers: Handlers
    identities: Identities
    workers: list[ServiceWorker]
    partner_key: str
    partner_key_id: str
    keys: InMemoryApiKeyStore
    hasher: ApiKeyHasher
    operations: MemoryOperations

    def records(self, topic: str) -> list[Record]:
        return [r for partition in self.broker.log(topic) for r in partition]

    def produced(self) -> dict[str, int]:
        """Records on every mesh topic (empty when nothing reached the bus)."""
        counts = {topic: len(self.records(topic)) for topic in TOPICS}
        return {topic: n for topic, n in counts.items() if n}

    def requests(self, topic: str = "orders.requests") -> list[Envelope]:
        return [from_record(r.headers, r.value) for r in self.records(topic)]

    def issue_key(self, owner: str, plan: UsagePlan = PARTNER_PLAN) -> tuple[str, str]:
        async def issue() -> tuple[str, str]:
            key, record = await issue_api_key(self.keys, self.hasher, owner=owner, plan=plan)
            return key, record.key_id

        portal = self.http.portal
        assert portal is not None
        return portal.call(issue)

    def revoke(self, key_id: str) -> None:
        portal = self.http.portal
        assert portal is not None
        assert portal.call(self.keys.revoke, key_id)


@contextmanager
def edge(policy: Policy = PROJECT, *, handlers: Handlers | None = None,
         limiter: RateLimitStore | None = None, workers: bool = True,
         request_timeout_s: float = 10.0, quota: QuotaStore | None = None) -> Iterator[Edge]:
    """The edge app of ``policy`` on an in-memory mesh (see the module docstring)."""
    handlers = handlers or Handlers()
    identities = Identities.generate(policy)
    broker = MemoryBroker()
    for topic in TOPICS:
        broker.create_topic(topic, partitions=1)
    keys, hasher = InMemoryApiKeyStore(), ApiKeyHasher(PEPPER)
    operations = MemoryOperations()

    async def factory() -> MeshClient:
        settings = BusSettings(service_name="gateway", reply_partition=0,
                               request_timeout_s=request_timeout_s)
        return MeshClient(MemoryTransport(broker), settings, identities.of("gateway"))

    guard = EdgeGuard(jwt=jwt_verifier(), api_keys=ApiKeyAuthenticator(keys, hasher),
                      limiter=limiter or InMemoryRateLimitStore(), quota=quota)
    app = create_app(policy, EdgeDeps(mesh=LazyMeshClient(factory), guard=guard,
                                      operations=operations))
    with TestClient(ClientIpFromHeader(app)) as http:
        portal = http.portal
        assert portal is not None
        running: list[ServiceWorker] = []
        tasks: list[asyncio.Task[None]] = []
        if workers:
            for service in handlers.services():
                worker = ServiceWorker(service, MemoryTransport(broker),
                                       BusSettings(service_name=service.name),
                                       identities.of(service.name),
                                       store=MemoryIdempotencyStore())
                running.append(worker)
                tasks.append(portal.call(_start, worker))
        state = Edge(http, app, broker, handlers, identities, running, "", "", keys, hasher,
                     operations)
        state.partner_key, state.partner_key_id = state.issue_key("partner-acme")
        try:
            yield state
        finally:
            for task in tasks:
                portal.call(_cancel, task)
            portal.call(app.state.mesh.close)


async def _start(worker: ServiceWorker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run(asyncio.Event()))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.done()
    if not task.cancelled() and task.exception() is not None:
        raise AssertionError("a worker crashed") from task.exception()


def assert_problem(response: Any, status: int, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert body["detail"]
    if reason is not None:
        assert body["reason"] == reason, body
    return body
