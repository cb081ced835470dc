"""Status route flood: one caller polls ``GET /v1/operations/{id}`` far beyond the policy's
``edge.status_rate_limit``, through the real HTTP endpoint. The reads beyond what the bucket
can allow must be refused 429 (``rate_limited``, with ``Retry-After``); a read that got past
the guard "reached the handler" (the operations store lookup).

How many reads the bucket may allow is counted, not assumed: ``burst`` plus what it refills
during the flood (``per_second`` times its duration, rounded up). The control is genuine: an
async submission (202) and one status read of it within the limit (200 with the operation).
"""

from __future__ import annotations

import asyncio
import math
import time

import httpx

from bus.policy.edge import StatusRateLimit
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.edge_cases import STATUS_FLOOD, Credentials

TIMEOUT_S = 30.0
CONCURRENCY = 4


def allowance(limit: StatusRateLimit, elapsed_s: float) -> int:
    """The most reads one caller's bucket can allow within ``elapsed_s`` (pure)."""
    return limit.burst + math.ceil(limit.per_second * max(0.0, elapsed_s))


def judge(answers: list[tuple[int, str, bool]], limit: StatusRateLimit, elapsed_s: float
          ) -> tuple[list[Outcome], list[str]]:
    """(status, reason, has Retry-After) of every flood read -> one outcome per read beyond
    the allowance: refused if enough reads were 429 ``rate_limited`` with Retry-After."""
    over = len(answers) - allowance(limit, elapsed_s)
    if over < 1:
        return [], [f"edge: the status flood of {len(answers)} reads in {elapsed_s:.1f}s "
                    "stayed within the limit; it proves nothing (raise the flood)"]
    limited = sum(1 for status, reason, retry_after in answers
                  if status == 429 and reason == "rate_limited" and retry_after)
    others = sorted({f"{status} {reason}".strip() for status, reason, retry_after in answers
                     if not (status == 429 and reason == "rate_limited" and retry_after)})
    # Which reads were refused does not matter, only how many: the first ``limited`` of the
    # reads over the allowance count as refused, the rest got past the guard.
    outcomes = [Outcome(STATUS_FLOOD, f"status read {n + 1} over the limit", n < limited,
                        0 if n < limited else 1,
                        "429 rate_limited" if n < limited else f"answered {', '.join(others)}")
                for n in range(over)]
    return outcomes, []


async def _read(client: httpx.AsyncClient, url: str, headers: dict[str, str]
                ) -> tuple[int, str, bool]:
    try:
        response = await client.get(url, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return 0, f"no answer: {type(exc).__name__}", False
    reason = ""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        reason = str(response.json().get("reason", ""))
    return response.status_code, reason, "retry-after" in response.headers


async def status_flood(endpoint: str, credentials: Credentials, run: str,
                       limit: StatusRateLimit, deadline: float) -> tuple[list[Outcome], list[str]]:
    """The control, then ``3 * burst + 10`` reads of its operation, ``CONCURRENCY`` at once."""
    headers = credentials.bearer(sub=f"{run}-poller")
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        submitted = await client.post(f"{endpoint}/v1/reports", headers=headers,
                                      json={"customer": f"{run}-status", "work_ms": 0},
                                      timeout=TIMEOUT_S)
        if submitted.status_code != 202:
            return [Outcome(CONTROL, "status flood: async submission", False, 0,
                            f"{submitted.status_code}")], []
        url = endpoint + str(submitted.json()["status_url"])
        status, reason, _ = await _read(client, url, headers)
        control = Outcome(CONTROL, "status flood: a read within the limit", False,
                          1 if status == 200 else 0, f"{status} {reason}".strip())
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> tuple[int, str, bool]:
            async with gate:
                if time.monotonic() > deadline:
                    return 0, "not sent: the suite's time was up", False
                return await _read(client, url, headers)

        started = time.monotonic()
        answers = list(await asyncio.gather(*(one() for _ in range(3 * limit.burst + 10))))
        elapsed = time.monotonic() - started
    outcomes, notes = judge(answers, limit, elapsed)
    return [control, *outcomes], notes
