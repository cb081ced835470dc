"""The gateway side of the gateway bench: the real edge app (``build_app``) through Mangum,
with in-memory stand-ins for what a deployment reaches over the network.

Stand-ins: the bus is a ``MemoryBroker`` whose ``orders.requests`` are served by a
``ServiceWorker`` running ``functions.orders.service.orders`` on the same event loop (the
one Mangum runs every invocation on); API keys live in an ``InMemoryApiKeyStore`` (DynamoDB
in a deployment), token buckets in an ``InMemoryRateLimitStore`` (DynamoDB), the JWT key
set inline in the policy (fetched from ``jwks_url`` in a deployment). Mesh messages are not
signed (``Identity.insecure``, as in the unit tests) unless the stand-ins get an access map
(``StandIns(access=...)``, the ``signed`` side): then the gateway and the orders worker each
have an Ed25519 key the other trusts, the edge asserts the caller as a deployed edge does, and
the worker keeps the idempotency record a signed worker must have (in memory: DynamoDB's round
trips are not in the figure).

Imports no PyJWT or ``cryptography`` of its own: the cold-start target imports this module
after the gateway's handler imports, and the gateway's own build must be what loads them.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from mangum import Mangum

from bench.gateway_bare import NO_CONTEXT
from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import H_SIGNATURE
from bus.policy.model import Policy, RateLimit
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.transport.memory import MemoryBroker, MemoryTransport
from functions.gateway.auth.api_keys import (
    ApiKeyAuthenticator,
    ApiKeyHasher,
    InMemoryApiKeyStore,
    UsagePlan,
    issue_api_key,
)
from functions.gateway.guard import EdgeGuard
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from functions.gateway.wiring import build_app, jwt_verifier
from functions.orders.service import orders

ROOT = Path(__file__).resolve().parent.parent
RECORDED_EVENT = ROOT / "tests" / "events" / "apigw_v2_post_orders.json"
POLICIES = ROOT / "policies"
API_KEY_ROUTE = "/v1/partner/orders"
# The partner route's definition with auth: jwt and a per-user rate limit (the project's
# own JWT routes are an aggregation and an async route, not a plain orders.create).
JWT_ROUTE = "/v1/bench/jwt/orders"
PEPPER = b"meshgate-bench-pepper-0123456789"
BIG_PLAN = UsagePlan(rate_per_s=1_000_000, burst=1_000_000)  # admits every bench request
BIG_LIMIT = RateLimit(per_second=1_000_000, burst=1_000_000)
STAND_INS = ("bus: in-memory broker + orders ServiceWorker on Mangum's loop (Kafka in a "
             "deployment), unsigned messages (the 'signed' side: Ed25519 as deployed, the "
             "worker's idempotency record in memory); API keys and rate-limit buckets in memory "
             "(DynamoDB); JWT key set inline (fetched from jwks_url)")


INSTANT_HANDLER = "instant"


class BenchFailure(AssertionError):
    """A bench request got a wrong answer: the run is void."""


# --- events and answers -------------------------------------------------------------------

def recorded_event() -> dict[str, Any]:
    """The recorded API Gateway v2 event of ``POST /v1/orders`` (tests/events)."""
    event: dict[str, Any] = json.loads(RECORDED_EVENT.read_text())
    return event


def event_for(path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The recorded event sent to ``path`` with ``headers`` added (a deep copy)."""
    event = copy.deepcopy(recorded_event())
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    event["headers"].update(headers)
    return event


def expected_order(event: dict[str, Any]) -> tuple[str, int, Decimal]:
    """Customer, item count and total the orders service must answer for ``event``."""
    order = json.loads(event["body"])
    lines = order["lines"]
    total = sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal(0))
    return order["customer"], sum(line["quantity"] for line in lines), total


def order_answer(payload: dict[str, Any]) -> dict[str, Any]:
    """What ``InstantMesh`` answers for an ``orders.create`` payload."""
    lines = payload["lines"]
    total = sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal(0))
    return {"order_id": "ord_0000000000000000", "customer": payload["customer"],
            "total": str(total), "item_count": sum(line["quantity"] for line in lines),
            "status": "accepted", "handled_by": INSTANT_HANDLER}


def check_order(response: dict[str, Any], event: dict[str, Any],
                handled_by: str = "orders") -> None:
    """Raise ``BenchFailure`` unless ``response`` is the 201 order the event asks for,
    answered by ``handled_by`` (``orders``: the worker; ``instant``: ``InstantMesh``)."""
    customer, items, total = expected_order(event)
    try:
        body = json.loads(response["body"])
        ok = (response["statusCode"] == 201 and body["customer"] == customer
              and body["item_count"] == items and Decimal(body["total"]) == total
              and str(body["order_id"]).startswith("ord_")
              and body["handled_by"] == handled_by)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        ok = False
    if not ok:
        raise BenchFailure(f"gateway answered {response.get('statusCode')}: "
                           f"{str(response.get('body'))[:300]}")


# --- policy -------------------------------------------------------------------------------

def bench_policy(base: Policy, jwks: dict[str, Any]) -> Policy:
    """``base`` as the bench serves it: its sync routes (the async one needs the operations
    table), plus ``JWT_ROUTE``, with ``edge.jwt``'s key set inline."""
    partner = next(r for r in base.routes if r.path == API_KEY_ROUTE)
    jwt_route = partner.model_copy(update={"path": JWT_ROUTE, "auth": "jwt",
                                           "rate_limit": BIG_LIMIT})
    assert base.edge is not None, "the policy has no edge"
    assert base.edge.jwt is not None, "the policy has no edge.jwt"
    jwt = base.edge.jwt.model_copy(update={"jwks_url": None, "jwks": jwks})
    routes = (*(r for r in base.routes if r.mode == "sync"), jwt_route)
    policy = base.model_copy(update={"routes": routes,
                                     "edge": base.edge.model_copy(update={"jwt": jwt})})
    return Policy.from_json(bundle(policy))  # validated, as the deployed edge loads it


def bundle(policy: Policy) -> str:
    """What the deploy writes to ``build/meshgate-policy.json``."""
    return policy.model_dump_json(exclude_defaults=True)


# --- stand-ins ----------------------------------------------------------------------------

class InstantMesh:
    """A mesh client that answers ``orders.create`` at once, without a bus: with it, the
    gateway's latency is the edge's own (HTTP, auth, limits, validation, response)."""

    def __init__(self) -> None:
        self.settings = BusSettings(service_name="gateway")
        self.requests = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def request(self, operation: str, payload: dict[str, Any],
                      **options: Any) -> dict[str, Any]:
        if operation != "orders.create":
            raise BenchFailure(f"InstantMesh only answers orders.create, not {operation}")
        self.requests += 1
        return order_answer(payload)


@dataclass
class StandIns:
    """The in-memory bus with its orders worker, and the in-memory key and bucket stores."""

    broker: MemoryBroker = field(default_factory=MemoryBroker)
    keys: InMemoryApiKeyStore = field(default_factory=InMemoryApiKeyStore)
    hasher: ApiKeyHasher = field(default_factory=lambda: ApiKeyHasher(PEPPER))
    limiter: InMemoryRateLimitStore = field(default_factory=InMemoryRateLimitStore)
    instant: bool = False  # InstantMesh instead of the memory broker and its worker
    # None: unsigned messages (Identity.insecure). Else signed as deployed, under this map.
    access: AccessPolicy | None = None
    clients: list[MeshClient] = field(default_factory=list)
    instants: list[InstantMesh] = field(default_factory=list)
    worker: ServiceWorker | None = None
    _stop: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    # Derived from ``access`` when built: each service's identity, and the worker's store.
    _identities: dict[str, Identity] = field(init=False, default_factory=dict)
    store: MemoryIdempotencyStore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        for topic in ("orders.requests", "mesh.replies", QUARANTINE_TOPIC):
            self.broker.create_topic(topic, partitions=1)
        self._identities = signed_identities(("gateway", orders.name), self.access)
        self.store = None if self.access is None else MemoryIdempotencyStore()
        self.worker = ServiceWorker(orders, MemoryTransport(self.broker),
                                    BusSettings(service_name=orders.name),
                                    self._identities[orders.name], store=self.store)

    async def mesh_client(self) -> MeshClient:
        """The edge's ``mesh_factory``: a mesh client on the memory broker (or instant)."""
        if self.instant:
            instant = InstantMesh()
            self.instants.append(instant)
            return cast(MeshClient, instant)
        client = MeshClient(MemoryTransport(self.broker),
                            BusSettings(service_name="gateway", reply_partition=0),
                            self._identities["gateway"])
        self.clients.append(client)
        return client

    def guard(self, policy: Policy) -> EdgeGuard:
        """What ``guard_from_env`` builds, with in-memory stores (and the same verifier)."""
        jwt = None
        if policy.edge is not None and policy.edge.jwt is not None:
            jwt = jwt_verifier(policy.edge.jwt)
        return EdgeGuard(jwt=jwt, api_keys=ApiKeyAuthenticator(self.keys, self.hasher),
                         limiter=self.limiter)

    def seals(self) -> dict[str, int]:
        """How the requests and replies on the bus were sealed: messages by the scheme their
        ``mesh_sig`` names (``ed25519``, ``ed25519-batch``, ``pair-hmac-sha256``; ``none``)."""
        found: dict[str, int] = {}
        for topic in ("orders.requests", "mesh.replies"):
            for record in self.broker.partition(topic, 0):
                seal = next((value.decode().partition(":")[0] for name, value in record.headers
                             if name == H_SIGNATURE), "none")
                found[seal] = found.get(seal, 0) + 1
        return found

    async def issue_key(self) -> str:
        key, _ = await issue_api_key(self.keys, self.hasher, owner="bench-partner",
                                     plan=BIG_PLAN)
        return key

    async def start(self) -> None:
        """Run the orders worker as a task of the running loop (call it on Mangum's)."""
        assert self.worker is not None
        assert self._task is None
        if self.instant:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.worker.run(self._stop))

    @property
    def handled(self) -> int:
        """Requests answered: by the orders worker, or by ``InstantMesh``."""
        if self.instant:
            return sum(c.requests for c in self.instants)
        return 0 if self.worker is None else self.worker.handled

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        if self._task is not None and self._stop is not None:
            self._stop.set()
            done, _ = await asyncio.wait([self._task], timeout=5)
            if not done:
                self._task.cancel()
                await asyncio.wait([self._task], timeout=5)
            if not self._task.cancelled() and self._task.exception() is not None:
                raise BenchFailure("the orders worker crashed") from self._task.exception()


def signed_identities(services: tuple[str, ...], access: AccessPolicy | None
                      ) -> dict[str, Identity]:
    """Each service's identity: insecure without ``access``; else a fresh Ed25519 key each,
    every key trusted by all, as ``meshgate keys`` provisions a stack."""
    if access is None:
        return {service: Identity.insecure(service) for service in services}
    keyring = KeyRing()
    keys = {}
    for service in services:
        signing, verify = generate_ed25519(service)
        keyring.add(verify)
        keys[service] = signing
    return {service: Identity(service, keys[service], keyring, access) for service in services}


# --- the gateway handler ------------------------------------------------------------------

@dataclass
class Gateway:
    """The edge app behind Mangum, its stand-ins running on Mangum's event loop."""

    app: FastAPI
    adapter: Mangum
    stand_ins: StandIns
    loop: asyncio.AbstractEventLoop
    api_key: str

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.adapter(event, NO_CONTEXT)
        return response

    def close(self) -> None:
        self.loop.run_until_complete(self.stand_ins.stop())


def gateway(policy: Policy, stand_ins: StandIns | None = None) -> Gateway:
    """Build the edge of ``policy`` as the Lambda handler does, on in-memory stand-ins, and
    start the orders worker on the event loop Mangum will run the invocations on."""
    stand_ins = stand_ins or StandIns()
    app = build_app({}, policy, mesh_factory=stand_ins.mesh_client,
                    guard=stand_ins.guard(policy))
    adapter = Mangum(app, lifespan="off")
    return serve(app, adapter, stand_ins)


def serve(app: FastAPI, adapter: Mangum, stand_ins: StandIns) -> Gateway:
    # Mangum has made sure the thread has an event loop; every invocation runs on
    # asyncio.get_event_loop() (mangum.protocols.http), so the worker must live there too.
    loop = asyncio.get_event_loop()
    if loop.is_closed() or loop.is_running():
        raise RuntimeError("the thread's event loop must be open and idle")
    key = loop.run_until_complete(stand_ins.issue_key())
    loop.run_until_complete(stand_ins.start())
    return Gateway(app, adapter, stand_ins, loop, key)
