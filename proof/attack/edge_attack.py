"""Edge attacks through the emulated API Gateway into the deployed gateway, over real HTTP.

A case is refused when the answer is a 4xx (a 5xx is a failure, never a refusal). It reached
a handler when its marker shows up in a record on the request topics (``bus_probe``), which
is where the gateway hands a call to the services' workers. A valid control request must be
answered and seen there, so the probe is known to be looking.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bus.policy.edge import StatusRateLimit
from infra.cli import keys as keys_cli
from infra.keys import dev_issuer
from infra.local import lifecycle
from infra.policy.load import load_policy
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets, values_since
from proof.attack.edge_cases import Cases, Credentials, EdgeCase, build
from proof.attack.edge_jwt_cache import run_jwt_cache
from proof.attack.edge_lambda_events import run_lambda_events
from proof.attack.edge_status_flood import status_flood
from proof.attack.edge_store_faults import run_store_faults

REQUEST_TIMEOUT_S = 30.0
PROBLEM = "application/problem+json"
RETRIES = 2


@dataclass(frozen=True)
class EdgePlan:
    rounds: int  # of every hand-written attack
    brute_force: int
    concurrency: int
    timeout_s: float


def loopback(url: str) -> str:
    """``url`` if it targets 127.0.0.1; anything else is refused (load goes nowhere else)."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname
    if host != "127.0.0.1":
        raise SystemExit(f"attack: refusing to target {url!r}: only 127.0.0.1 is allowed")
    return url


def endpoint_of(settings: Settings) -> str:
    endpoint = lifecycle.status(settings)["endpoint"]
    if not isinstance(endpoint, str):
        raise SystemExit("attack: no deployed edge; run 'make up' (or meshgate up) first")
    return loopback(endpoint)


@contextmanager
def credentials(settings: Settings) -> Iterator[Credentials]:
    """Dev-issuer key material, a live API key and a revoked one; both keys revoked after."""
    lines: list[str] = []
    live = keys_cli.issue_command(settings, lines.append, owner="attack", rate=1000, burst=1000,
                                  quota=None)
    live_key = lines[-1]
    revoked = keys_cli.issue_command(settings, lines.append, owner="attack-revoked", rate=1,
                                     burst=1, quota=None)
    revoked_key = lines[-1]
    keys_cli.revoke_command(settings, lambda _: None, revoked.key_id)
    edge = load_policy(Path(settings.root) / "policies").edge
    if edge is None:
        raise SystemExit("attack: the policy has no edge section")
    try:
        yield Credentials(issuer=dev_issuer.issuer_config(settings),
                          key=dev_issuer.signing_key(settings), api_key=live_key,
                          revoked_key=revoked_key, now=int(time.time()),
                          max_body_bytes=edge.max_body_bytes)
    finally:
        keys_cli.revoke_command(settings, lambda _: None, live.key_id)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start:start + 64 * 1024]


async def send(client: httpx.AsyncClient, endpoint: str, case: EdgeCase) -> tuple[int, str]:
    """The status and the refusal's reason (or the start of the body). A 429 or 503 (a rate
    limit, or its store failing closed under this load) is retried, at most ``RETRIES`` times:
    it says nothing about the attack, and a client would try again."""
    for attempt in range(RETRIES + 1):
        content = _chunks(case.body) if case.chunked and case.body is not None else case.body
        try:
            response = await client.request(case.method, endpoint + case.path,
                                            headers=case.headers, content=content,
                                            timeout=REQUEST_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return 0, f"no answer: {type(exc).__name__}"
        if response.status_code not in (429, 503) or attempt == RETRIES:
            break
        await asyncio.sleep(0.5 * (attempt + 1))
    reason = ""
    if response.headers.get("content-type", "").startswith(PROBLEM):
        try:
            reason = str(response.json().get("reason", ""))
        except ValueError:
            reason = "unreadable problem"
    return response.status_code, reason or response.text[:40].replace("\n", " ")


async def send_all(endpoint: str, cases: list[EdgeCase], plan: EdgePlan, deadline: float
                   ) -> list[tuple[int, str]]:
    gate = asyncio.Semaphore(plan.concurrency)

    async def one(case: EdgeCase) -> tuple[int, str]:
        async with gate:
            if time.monotonic() > deadline:
                return 0, "not sent: the suite's time was up"
            return await send(client, endpoint, case)

    limits = httpx.Limits(max_connections=plan.concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        return list(await asyncio.gather(*(one(case) for case in cases)))


def judge(cases: list[EdgeCase], answers: list[tuple[int, str]], seen: Counter[str]
          ) -> list[Outcome]:
    """Refused: a 4xx. Reached: the marker was on a request topic (pure). One request may
    put several records there (an aggregate calls two services): it counts once."""
    outcomes = []
    for case, (status, reason) in zip(cases, answers, strict=True):
        reached = 1 if seen.get(case.marker, 0) else 0
        text = f"{status} {reason if status >= 400 else ''}".strip()
        refused = case.category != CONTROL and 400 <= status < 500
        outcomes.append(Outcome(case.category, f"{case.label} [{case.marker}]", refused,
                                reached, text))
    return outcomes


def markers_in(values: list[bytes], run: str) -> Counter[str]:
    """How many request-topic records carry each of this run's markers."""
    pattern = re.compile(re.escape(run).encode() + rb"-[0-9]{6}")
    found: Counter[str] = Counter()
    for value in values:
        for marker in set(pattern.findall(value)):
            found[marker.decode()] += 1
    return found


async def _attack(bootstrap: str, endpoint: str, run: str, cases: list[EdgeCase],
                  plan: EdgePlan, deadline: float) -> tuple[list[tuple[int, str]], Counter[str]]:
    before = await end_offsets(bootstrap)
    answers = await send_all(endpoint, cases, plan, deadline)
    await asyncio.sleep(0.5)  # a send the gateway made was acknowledged before it answered
    return answers, markers_in(await values_since(bootstrap, before), run)


def run_edge(settings: Settings, plan: EdgePlan) -> tuple[list[Outcome], list[str]]:
    """Synchronous: issuing and revoking keys runs its own event loop."""
    deadline = time.monotonic() + plan.timeout_s
    bootstrap = loopback(settings.kafka_bootstrap)
    endpoint = endpoint_of(settings)
    run = f"atk{uuid.uuid4().hex[:8]}"
    with credentials(settings) as creds:
        cases = build(Cases(run, creds), rounds=plan.rounds, brute_force=plan.brute_force)
        answers, seen = asyncio.run(_attack(bootstrap, endpoint, run, cases, plan, deadline))
        flood, flood_notes = asyncio.run(status_flood(endpoint, creds, run,
                                                      status_limit(settings), deadline))
    events, event_notes = run_lambda_events(settings)
    faults, fault_notes = run_store_faults(settings)
    cached, cache_notes = run_jwt_cache(settings)
    stray = set(seen) - {case.marker for case in cases}
    notes = [f"edge: markers of this run on the bus that no case sent: {sorted(stray)}"
             ] if stray else []
    control = [a for c, a in zip(cases, answers, strict=True) if c.category == CONTROL]
    notes += [f"edge: the control was answered {status} {reason}"
              for status, reason in control if status != 200]
    return (judge(cases, answers, seen) + flood + events + faults + cached,
            notes + flood_notes + event_notes + fault_notes + cache_notes)


def status_limit(settings: Settings) -> StatusRateLimit:
    edge = load_policy(Path(settings.root) / "policies").edge
    return edge.status_rate_limit if edge is not None else StatusRateLimit()
