"""What the edge gateway costs over a bare FastAPI + Mangum handler, per request and at
cold start (issue 5). Run with ``make bench-gateway`` or ``.venv/bin/python -m
bench.gateway_overhead [--requests 4000 --rounds 8 --cold 7 ...]`` (``--help``).

Measured in one run, both handlers invoked in-process through Mangum (``lifespan="off"``)
with the recorded API Gateway v2 event (tests/events/apigw_v2_post_orders.json):

(a) bare: FastAPI, one POST route answering a small JSON object (``bench.gateway_bare``).
(b) gateway: the real edge (``functions.gateway.wiring.build_app``) of the project's policy
    as bundled by the deploy (``bench.gateway_apps.bench_policy``), ``POST
    /v1/partner/orders``: API-key authentication, the key's usage-plan bucket (a plan that
    never denies), JSON-schema validation of the body, then ``orders.create`` on the bus,
    answered by the orders ``ServiceWorker`` on an in-memory broker running on the event
    loop Mangum invokes on. Also reported, to see where the time goes: ``edge`` (the same
    app with a mesh client that answers at once: the edge's own cost), ``jwt`` (the same
    route with ``auth: jwt``, ES256, and a per-user bucket; ``jwt_edge``: the same on the
    instant mesh client, the token's own cost) and ``bus`` (``orders.create``
    alone, the gateway's mesh client straight to the worker, no HTTP), ``signed`` (the
    gateway as a stack runs it: Ed25519 signatures on the request and the reply, the
    edge's assertion of the caller, the worker's idempotency claim and completion, in
    memory; the other sides' messages are unsigned and their worker keeps no record) and
    ``pair`` (the same, with the gateway and orders accepting per-pair MACs:
    ``message_auth: pair-mac``).

Every answer is checked (status and body: a 201 order for the event's lines; the worker's
count must match); one wrong answer voids the run. Warm latency: ``--warmup`` unmeasured
requests per side, then ``--requests`` per side split over ``--rounds`` ABBA rounds (bare,
gateway, edge, jwt, bus, then the reverse...), so a slow spell of this shared machine hits every
side alike. Cold start: ``--cold`` fresh interpreters per handler, interleaved
(``bench.cold_start``), from spawn to first response; the gateway's stand-ins are timed on
their own and left out. The in-memory bus and stores stand in for Kafka and DynamoDB: the
handler's imports are measured as deployed (``wiring`` imports aiokafka and botocore), but
a deployment's first request also connects to Kafka, reads the signing key from Secrets
Manager and builds the DynamoDB stores (boto3), none of which is measured here.

Targets: gateway p50 under 1.5x the bare p50; gateway cold start under 1.3x the bare one.
The last line is one JSON object (also written to ``bench/results/gateway_overhead.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import io
import json
import pstats
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cold_start, stats
from bench.gateway_apps import (
    API_KEY_ROUTE,
    INSTANT_HANDLER,
    JWT_ROUTE,
    POLICIES,
    RECORDED_EVENT,
    STAND_INS,
    BenchFailure,
    Gateway,
    StandIns,
    bench_policy,
    bundle,
    check_order,
    event_for,
    expected_order,
    gateway,
    recorded_event,
)
from bench.gateway_bare import HELLO, NO_CONTEXT, bare_handler
from bench.gateway_secured import check_secured, secured_gateways
from bench.gateway_tokens import BenchIssuer
from bench.machine import describe
from functions.gateway.auth.api_keys import API_KEY_HEADER
from infra.deploy.pipeline import load_bundle
from infra.deploy.validators import write_validators
from infra.policy import load_policy
from proof.procs import ROOT

RESULTS = ROOT / "bench" / "results" / "gateway_overhead.json"
TARGET_REQUEST_RATIO = 1.5
# Issue 15's targets, per side, p50 over the bare p50.
TARGET_RATIOS_15 = {"gateway": 2.5, "edge": 1.5, "jwt": 3.0}
TARGET_COLD_RATIO = 1.3
BUS_TIMEOUT_S = 10.0
VERSIONS = ("fastapi", "starlette", "mangum", "pydantic", "fastjsonschema", "PyJWT")

Call = Callable[[], dict[str, Any]]


@dataclass
class Side:
    """One contender: a call returning the Lambda response, and its check."""

    name: str
    call: Call
    check: Callable[[dict[str, Any]], None]
    latencies_us: list[float] = field(default_factory=list)
    ok: int = 0

    def run(self, count: int, record: bool = True) -> None:
        for _ in range(count):
            started = time.perf_counter_ns()
            response = self.call()
            elapsed = time.perf_counter_ns() - started
            self.check(response)  # raises on a wrong answer: the run is void
            if record:
                self.latencies_us.append(elapsed / 1000)
                self.ok += 1


def check_bare(response: dict[str, Any]) -> None:
    if response.get("statusCode") != 200 or json.loads(response.get("body") or "0") != HELLO:
        raise BenchFailure(f"bare answered {response.get('statusCode')}: "
                           f"{str(response.get('body'))[:300]}")


def sides(gw: Gateway, edge: Gateway | None, token: str, with_jwt: bool,
          with_bus: bool, secured: Mapping[str, Gateway] | None = None) -> list[Side]:
    bare = bare_handler()  # after the gateway's Mangum: both run on the thread's one loop
    bare_event = recorded_event()
    key_event = event_for(API_KEY_ROUTE, {API_KEY_HEADER: gw.api_key})
    result = [
        Side("bare", lambda: bare(bare_event, NO_CONTEXT), check_bare),
        Side("gateway", lambda: gw(key_event), lambda r: check_order(r, key_event)),
    ]
    if edge is not None:
        edge_event = event_for(API_KEY_ROUTE, {API_KEY_HEADER: edge.api_key})
        result.append(Side("edge", lambda: edge(edge_event),
                           lambda r: check_order(r, edge_event, INSTANT_HANDLER)))
    for name, app in (secured or {}).items():
        result.append(secured_side(name, app))
    if with_jwt:
        jwt_event = event_for(JWT_ROUTE, {"authorization": f"Bearer {token}"})
        result.append(Side("jwt", lambda: gw(jwt_event), lambda r: check_order(r, jwt_event)))
        if edge is not None:  # the JWT route's edge alone: what the token costs, no bus
            result.append(Side("jwt_edge", lambda: edge(jwt_event),
                               lambda r: check_order(r, jwt_event, INSTANT_HANDLER)))
    if with_bus:
        payload = json.loads(key_event["body"])
        customer, items, _ = expected_order(key_event)

        async def round_trip() -> dict[str, Any]:
            client = await gw.app.state.mesh.get()
            answer: dict[str, Any] = await client.request("orders.create", payload,
                                                          timeout_s=BUS_TIMEOUT_S)
            return answer

        def bus_call() -> dict[str, Any]:  # one run_until_complete, as Mangum does
            return gw.loop.run_until_complete(round_trip())

        def bus_check(answer: dict[str, Any]) -> None:
            if answer.get("customer") != customer or answer.get("item_count") != items:
                raise BenchFailure(f"orders.create answered {answer!r}")

        result.append(Side("bus", bus_call, bus_check))
    return result


def secured_side(name: str, app: Gateway) -> Side:
    event = event_for(API_KEY_ROUTE, {API_KEY_HEADER: app.api_key})
    return Side(name, lambda: app(event), lambda r: check_order(r, event))


def measure_warm(all_sides: list[Side], requests: int, warmup: int, rounds: int) -> None:
    for side in all_sides:
        side.run(warmup, record=False)
    for index, count in enumerate(stats.split(requests, rounds)):
        order = all_sides if index % 2 == 0 else list(reversed(all_sides))
        for side in order:
            side.run(count)


def profile(side: Side, count: int, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    side.run(count, record=False)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


# --- report -------------------------------------------------------------------------------

def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def result_of(warm: list[Side], cold: cold_start.ColdRuns, args: argparse.Namespace,
              handled: dict[str, int]) -> dict[str, Any]:
    by_name = {side.name: stats.summarize(side.latencies_us) for side in warm}
    bare, gw = by_name["bare"], by_name["gateway"]
    ratios = {name: stats.ratio(summary.p50_ms, bare.p50_ms) for name, summary in by_name.items()}
    bare_cold, gw_cold = cold.median("bare"), cold.median("gateway")
    request_ratio = ratios["gateway"]
    cold_ratio = stats.ratio(gw_cold, bare_cold)
    result: dict[str, Any] = {
        "bare_us": _r(bare.p50_ms),
        "gateway_us": _r(gw.p50_ms),
        "bare_cold_ms": _r(bare_cold),
        "gateway_cold_ms": _r(gw_cold),
        "request_ratio": _r(request_ratio, 3),
        "cold_ratio": _r(cold_ratio, 3),
        "request_ratio_ok": request_ratio is not None and request_ratio < TARGET_REQUEST_RATIO,
        "cold_ratio_ok": cold_ratio is not None and cold_ratio < TARGET_COLD_RATIO,
    }
    for name, summary in by_name.items():
        result[f"{name}_p50_us"] = _r(summary.p50_ms)
        result[f"{name}_p90_us"] = _r(summary.p90_ms)
        result[f"{name}_p99_us"] = _r(summary.p99_ms)
        if name not in ("bare", "gateway"):  # the gateway's is request_ratio
            result[f"{name}_ratio"] = _r(ratios[name], 3)
    for name in ("jwt", "edge", "bus"):
        if name in by_name:
            result[f"{name}_us"] = _r(by_name[name].p50_ms)
    for name, target in TARGET_RATIOS_15.items():
        if name in ratios:
            ratio = ratios[name]
            result[f"{name}_ratio_15_ok"] = ratio is not None and ratio <= target
    if "bus" in by_name:
        result["gateway_minus_bus_us"] = _r(gw.p50_ms - by_name["bus"].p50_ms)
    result.update({
        "gateway_cold_with_standins_ms": _r(cold.median_with_standins("gateway")),
        "cold_phases_ms": {side: {k: _r(v) for k, v in cold.median_phases(side).items()}
                           for side in cold_start.SIDES},
        "ok": {side.name: side.ok for side in warm},
        "sent": {side.name: len(side.latencies_us) for side in warm},
        "handled": handled,
        "requests": args.requests,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "cold_starts": args.cold,
        "stand_ins": STAND_INS,
        "machine": describe(),
        "versions": versions(),
    })
    return result


def print_report(warm: list[Side], cold: cold_start.ColdRuns, result: dict[str, Any],
                 imports: cold_start.ImportReport | None) -> None:
    print(f"{'per request (us)':<20}{'p50':>10}{'p90':>10}{'p99':>10}{'p50/bare':>10}  ok/sent")
    bare_p50 = result["bare_p50_us"]
    for side in warm:
        s = stats.summarize(side.latencies_us)
        print(f"{side.name:<20}{s.p50_ms:>10.1f}{s.p90_ms:>10.1f}{s.p99_ms:>10.1f}"
              f"{stats.fmt_ratio(stats.ratio(s.p50_ms, bare_p50)):>10}  "
              f"{side.ok}/{len(side.latencies_us)}")
    print("edge: the gateway with a mesh client that answers at once (no bus); jwt_edge: "
          "the JWT route on it; bus: orders.create alone, mesh client to worker (no HTTP); "
          "signed: the gateway with Ed25519 messages and the worker's idempotency record; "
          "pair: the same with per-pair MACs between the gateway and orders")
    print(f"target gateway/bare p50 < {TARGET_REQUEST_RATIO}x: "
          f"{stats.fmt_ratio(result['request_ratio'])} "
          + ("OK" if result["request_ratio_ok"] else "MISSED"))
    print(f"{'cold start (ms)':<20}{'median':>10}  phases (median)")
    for name in cold_start.SIDES:
        phases = "  ".join(f"{k} {v:.1f}" for k, v in cold.median_phases(name).items())
        print(f"{name:<20}{cold.median(name):>10.1f}  {phases}")
    print(f"gateway with stand-ins: {result['gateway_cold_with_standins_ms']:.1f} ms "
          "(stand-ins are left out of the gateway's cold start)")
    print(f"target gateway/bare cold < {TARGET_COLD_RATIO}x: "
          f"{stats.fmt_ratio(result['cold_ratio'])} "
          + ("OK" if result["cold_ratio_ok"] else "MISSED"))
    if imports is not None:
        print(f"imports (-X importtime, self time, stand-ins left out): bare "
              f"{imports.bare_ms:.1f} ms, gateway {imports.gateway_ms:.1f} ms; the gateway's "
              "extra, by top-level package:")
        for cost, bare_ms in imports.extra:
            print(f"  {cost.name:<24}{cost.self_ms - bare_ms:>+8.1f} ms  (gateway "
                  f"{cost.self_ms:.1f} ms in {cost.modules} modules, bare {bare_ms:.1f} ms)")
    print(f"stand-ins: {STAND_INS}")


# --- main ---------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    base = load_policy(POLICIES)
    assert base.edge is not None
    assert base.edge.jwt is not None
    issuer = BenchIssuer(base.edge.jwt.issuer, base.edge.jwt.audience[0])
    policy = bench_policy(base, issuer.jwks())
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        policy_file = Path(tmp) / "meshgate-policy.json"
        policy_file.write_text(bundle(policy))
        checks = Path(tmp) / "checks"  # the gateway zip's routes' checks, as deployed
        write_validators(load_bundle(policy_file), checks)
        env = cold_start.child_env(str(policy_file), str(RECORDED_EVENT), str(checks))
        print(f"==> cold start: {args.cold} fresh interpreters per handler", flush=True)
        cold = cold_start.measure(env, args.cold, warmup=args.cold_warmup)
        imports = None if args.no_importtime else cold_start.import_report(env)

    print(f"==> per request: {args.requests} per side after {args.warmup} warmup, "
          f"{args.rounds} ABBA rounds", flush=True)
    # One loop for everything, set as the thread's loop before any Mangum exists: Mangum
    # runs each invocation on asyncio.get_event_loop(), so both apps, the orders worker and
    # the mesh clients all live on it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    gw = gateway(policy)
    edge = None if args.no_edge else gateway(policy, StandIns(instant=True))
    secured = {} if args.no_signed else secured_gateways(policy)
    try:
        warm = sides(gw, edge, issuer.token(), not args.no_jwt, not args.no_bus, secured)
        measure_warm(warm, args.requests, args.warmup, args.rounds)
        by_name = {side.name: side for side in warm}
        handled = {"orders_worker": gw.stand_ins.handled,
                   "instant_mesh": 0 if edge is None else edge.stand_ins.handled,
                   **{f"{name}_worker": app.stand_ins.handled for name, app in secured.items()}}
        for answered_by, names in (("orders_worker", ("gateway", "jwt", "bus")),
                                   ("instant_mesh", ("edge", "jwt_edge")),
                                   *((f"{name}_worker", (name,)) for name in secured)):
            expected = sum(len(by_name[n].latencies_us) + args.warmup
                           for n in names if n in by_name)
            if handled[answered_by] != expected:
                raise BenchFailure(f"{answered_by} answered {handled[answered_by]} "
                                   f"requests, not {expected}")
        secured_report = check_secured(secured)
        if args.profile:
            print(profile(by_name["gateway"], args.profile))
    finally:
        for app in (gw, edge, *secured.values()):
            if app is not None:
                app.close()
        asyncio.set_event_loop(None)
        loop.close()
    result = result_of(warm, cold, args, handled)
    result.update(secured_report)
    if imports is not None:  # what the gateway imports beyond the bare app, by package
        result["cold_import_extra_ms"] = {cost.name: _r(cost.self_ms - bare_ms)
                                          for cost, bare_ms in imports.extra[:6]}
    print_report(warm, cold, result, imports)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Edge gateway vs bare FastAPI + Mangum: per-request and cold start.")
    parser.add_argument("--requests", type=int, default=4000, help="measured, per side")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured, per side")
    parser.add_argument("--rounds", type=int, default=8, help="ABBA rounds")
    parser.add_argument("--cold", type=int, default=7, help="cold starts per handler")
    parser.add_argument("--cold-warmup", type=int, default=1,
                        help="unmeasured cold starts per handler first")
    parser.add_argument("--no-importtime", action="store_true",
                        help="skip the -X importtime run of the gateway")
    parser.add_argument("--no-jwt", action="store_true", help="skip the JWT route")
    parser.add_argument("--no-bus", action="store_true", help="skip the bus-only side")
    parser.add_argument("--no-signed", action="store_true",
                        help="skip the signed and pair sides (messages sealed as a stack "
                        "seals them, the worker's idempotency record)")
    parser.add_argument("--no-edge", action="store_true",
                        help="skip the edge side (the gateway with an instant mesh client)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after measuring, cProfile N gateway requests (top by tottime)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for name in ("requests", "rounds", "cold"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.warmup < 0 or args.cold_warmup < 0 or args.profile < 0:
        parser.error("--warmup, --cold-warmup and --profile must be >= 0")
    if args.requests < args.rounds:
        parser.error("--requests must be at least --rounds")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"machine: {describe()}")
    print(f"versions: {versions()}")
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
