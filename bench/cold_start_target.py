"""Child process of the cold-start measurement: ``python -m bench.cold_start_target
bare|gateway`` does what a fresh Lambda instance does, then prints one JSON line.

bare: import FastAPI and Mangum, build the hello-world app, answer the recorded event.
gateway: the handler's imports (``mangum``, ``functions.gateway.wiring``) with the collector
paused as the handler pauses it (``functions.shared.init_gc``), the policy read from the
bundle ``MESH_POLICY_FILE`` names, the guard and the app built (``build_app``), Mangum, the
init's objects frozen, the first invocation (``POST /v1/partner/orders`` with an API key).
The in-memory stand-ins for Kafka and DynamoDB (``bench.gateway_apps``) are set up in phases
of their own (``standins``), after the handler's imports, so the parent can leave them out.

The JSON line has ``phases``: ``[name, end]`` in order, each phase running from the end of
the one before (the first from ``started``), all ``time.perf_counter_ns()`` marks
(CLOCK_MONOTONIC on Linux, so the parent's spawn mark is on the same clock). Each phase is
also announced on stderr (``bench-phase: <name>``) so ``-X importtime`` lines can be
attributed to it.
"""

import time

STARTED_NS = time.perf_counter_ns()  # first thing: the interpreter is up

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

PHASE = "bench-phase:"


class Phases:
    def __init__(self) -> None:
        self.ends: list[tuple[str, int]] = []
        self._announce("imports")

    @staticmethod
    def _announce(name: str) -> None:
        print(f"{PHASE} {name}", file=sys.stderr, flush=True)

    def end(self, name: str, following: str | None = None) -> None:
        """``name`` is over; ``following`` starts (announced for -X importtime)."""
        self.ends.append((name, time.perf_counter_ns()))
        if following is not None:
            self._announce(following)


def bare(phases: Phases) -> tuple[bool, int]:
    from bench.gateway_bare import HELLO, NO_CONTEXT, bare_handler

    phases.end("imports", "build")
    handler = bare_handler()
    phases.end("build", "first_call")
    with open(os.environ["BENCH_EVENT_FILE"]) as file:
        event = json.load(file)
    response = handler(event, NO_CONTEXT)
    phases.end("first_call")
    return response["statusCode"] == 200 and json.loads(response["body"]) == HELLO, int(
        response["statusCode"])


def gateway(phases: Phases) -> tuple[bool, int]:
    from functions.shared import init_gc  # as functions/gateway/handler.py does

    init_gc.pause_collection()
    from mangum import Mangum  # what the handler imports

    from functions.gateway.wiring import build_app, load_bundled_policy

    phases.end("imports", "standins")
    from bench import gateway_apps

    stand_ins = gateway_apps.StandIns()
    phases.end("standins", "build")
    policy = load_bundled_policy(os.environ)
    app = build_app(os.environ, policy, mesh_factory=stand_ins.mesh_client,
                    guard=stand_ins.guard(policy))
    adapter = Mangum(app, lifespan="off")
    init_gc.settle_for_serving()
    phases.end("build", "standins")
    gw = gateway_apps.serve(app, adapter, stand_ins)  # the worker, on Mangum's loop
    event = gateway_apps.event_for(gateway_apps.API_KEY_ROUTE,
                                   {"x-api-key": gw.api_key})
    phases.end("standins", "first_call")
    response = gw(event)
    phases.end("first_call", "done")
    try:
        gateway_apps.check_order(response, event)
        ok = stand_ins.handled == 1
    except gateway_apps.BenchFailure as exc:
        print(f"bench: {exc}", file=sys.stderr)
        ok = False
    gw.close()
    return ok, int(response["statusCode"])


def main() -> None:
    which = sys.argv[1] if len(sys.argv) == 2 else ""
    if which not in ("bare", "gateway"):
        raise SystemExit("usage: python -m bench.cold_start_target bare|gateway")
    phases = Phases()
    ok, status = bare(phases) if which == "bare" else gateway(phases)
    print(json.dumps({"which": which, "started": STARTED_NS, "phases": phases.ends,
                      "ok": ok, "status": status}), flush=True)


if __name__ == "__main__":
    main()
