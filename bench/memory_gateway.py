"""Resident memory of the gateway handler after N requests, in a fresh interpreter.

``python -m bench.memory_gateway [--requests 1000]`` builds the edge exactly as the gateway
bench does (``bench.gateway_apps.gateway``: the project's policy, ``build_app`` behind
Mangum, the orders ``ServiceWorker`` on an in-memory bus, API keys and buckets in memory),
answers ``--requests`` API-key ``POST /v1/partner/orders`` events (each answer checked), and
prints one JSON line: VmRSS after the imports, after the build, after the first request and
after the last one, and the peak (VmHWM), in MiB.

The process also holds the stand-ins (in-memory broker log, worker), so the figure is an
upper bound of what the deployed function holds; a deployed one holds aiokafka's and
botocore's clients instead. Target: under 128 MiB after 1,000 requests (the smallest
Lambda size the gateway could run in).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bench import rss

TARGET_RSS_MB = 128.0


def run(requests: int) -> dict[str, Any]:
    marks = {"start_mb": rss.rss_mb()}
    from bench.gateway_apps import (
        API_KEY_ROUTE,
        POLICIES,
        bench_policy,
        check_order,
        event_for,
        gateway,
    )
    from bench.gateway_tokens import BenchIssuer
    from functions.gateway.auth.api_keys import API_KEY_HEADER
    from infra.policy import load_policy

    marks["imported_mb"] = rss.rss_mb()
    base = load_policy(POLICIES)
    assert base.edge is not None
    assert base.edge.jwt is not None
    issuer = BenchIssuer(base.edge.jwt.issuer, base.edge.jwt.audience[0])
    policy = bench_policy(base, issuer.jwks())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw = gateway(policy)
    try:
        marks["built_mb"] = rss.rss_mb()
        event = event_for(API_KEY_ROUTE, {API_KEY_HEADER: gw.api_key})
        check_order(gw(event), event)
        marks["first_request_mb"] = rss.rss_mb()
        for _ in range(requests - 1):
            check_order(gw(event), event)  # raises on a wrong answer: the run is void
        marks["after_requests_mb"] = rss.rss_mb()
        handled = gw.stand_ins.handled
    finally:
        gw.close()
        asyncio.set_event_loop(None)
        loop.close()
    if handled != requests:
        raise RuntimeError(f"the orders worker answered {handled} requests, not {requests}")
    after = marks["after_requests_mb"]
    return {
        "requests": requests,
        **{k: round(v, 1) for k, v in marks.items()},
        "peak_mb": round(rss.peak_rss_mb(), 1),
        "growth_first_to_last_mb": round(after - marks["first_request_mb"], 1),
        "target_mb": TARGET_RSS_MB,
        "rss_ok": after < TARGET_RSS_MB,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gateway handler RSS after N requests.")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be positive")
    print(json.dumps(run(args.requests)))


if __name__ == "__main__":
    main()
