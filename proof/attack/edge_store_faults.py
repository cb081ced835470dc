"""The edge when its rate-limit store fails (issue 12): a request must never get a free pass
and a bug must never answer with its internals.

The project's edge app runs in-process on the project policy's ``POST /v1/orders`` route with
its rate-limit store broken three ways: a table that does not exist on the REAL emulator
(DynamoDB's ResourceNotFoundException: ``RateLimitRefused``), an endpoint that does not
answer (a connection error: retriable ``RateLimitError``), and a store with a bug (an
unexpected exception). The first two must be refused 503 ``ratelimit_unavailable``; the bug
must become a 500 problem+json naming nothing internal (before issue 12 the guard caught every
exception as a 503 "retry", hiding bugs behind a retriable answer). A case reached the
handler when the mesh client (the next step after the guard) was asked for. The control is
the same request with a working store: it passes the guard and asks for the mesh client.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from botocore.config import Config

from functions.gateway.guard import EdgeGuard, RateLimitStore
from functions.gateway.ratelimit.bucket import Decision, Limit
from functions.gateway.ratelimit.dynamodb import DynamoDBRateLimitStore
from functions.gateway.ratelimit.leased import LeasedRateLimitStore
from functions.gateway.ratelimit.memory import InMemoryRateLimitStore
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.edge_cases import STORE_FAULTS
from proof.attack.edge_inprocess import EdgeInProcess
from proof.procs import free_port

ROUTE = ("POST", "/v1/orders")
LEAK = "internal-detail-7f3a: table meshgate-private at 10.9.8.7"
TIMEOUT_S = 20.0
ORDER = {"customer": "atk-store-faults",
         "lines": [{"sku": "atk-1", "quantity": 1, "unit_price": "1.00"}]}


class BuggyStore:
    """A store whose code has a bug: the error is nobody's known family."""

    async def take(self, key: str, limit: Limit) -> Decision:
        raise ZeroDivisionError(LEAK)


def _stores(settings: Settings) -> list[tuple[str, RateLimitStore, int, str]]:
    """(label, store, the status it must get, the problem reason it must carry)."""
    unreachable: dict[str, Any] = {
        **settings.aws_client_args(), "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "config": Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})}
    missing = f"atk-no-such-table-{uuid.uuid4().hex[:8]}"
    return [
        ("rate-limit table missing on the emulator",
         DynamoDBRateLimitStore(missing, client_args=settings.aws_client_args()),
         503, "ratelimit_unavailable"),
        ("rate-limit store unreachable",
         DynamoDBRateLimitStore("any", client_args=unreachable), 503, "ratelimit_unavailable"),
        ("rate-limit store with a bug", BuggyStore(), 500, "internal"),
        # The deployed form (issue 15): tokens leased in batches from the same stores.
        ("leased tokens, table missing on the emulator",
         LeasedRateLimitStore(DynamoDBRateLimitStore(
             missing, client_args=settings.aws_client_args())), 503, "ratelimit_unavailable"),
        ("leased tokens, store unreachable",
         LeasedRateLimitStore(DynamoDBRateLimitStore("any", client_args=unreachable)),
         503, "ratelimit_unavailable"),
    ]


async def _one(settings: Settings, store: RateLimitStore) -> tuple[httpx.Response, int]:
    """The answer to one genuine order request, and how often the mesh was asked for."""
    method, path = ROUTE
    async with EdgeInProcess(settings, lambda r: r.method == method and r.path == path,
                             EdgeGuard(limiter=store), "198.51.100.77") as edge:
        answer = await edge.http.post(path, json=ORDER, timeout=TIMEOUT_S)
    return answer, edge.asked


def _verdict(answer: httpx.Response, status: int, reason: str) -> tuple[bool, str]:
    problem = answer.headers.get("content-type", "").startswith("application/problem+json")
    got = answer.json().get("reason") if problem else answer.text[:40]
    text = f"{answer.status_code} {got}"
    leaked = LEAK in answer.text or "ZeroDivisionError" in answer.text
    return (answer.status_code == status and problem and got == reason and not leaked,
            text + (" (leaked internals)" if leaked else ""))


async def _run(settings: Settings) -> list[Outcome]:
    outcomes: list[Outcome] = []
    answer, asked = await _one(settings, InMemoryRateLimitStore())
    outcomes.append(Outcome(CONTROL, "store faults: the same request with a working store",
                            False, asked, f"passed the guard, then {answer.status_code}"))
    for label, store, status, reason in _stores(settings):
        answer, asked = await _one(settings, store)
        refused, text = _verdict(answer, status, reason)
        outcomes.append(Outcome(STORE_FAULTS, label, refused and asked == 0, asked, text))
    return outcomes


def run_store_faults(settings: Settings) -> tuple[list[Outcome], list[str]]:
    """Synchronous: its own event loop."""
    return asyncio.run(_run(settings)), []
