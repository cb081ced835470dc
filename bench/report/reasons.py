"""Why a target is missed: the reason its own run measured where the run has the figures,
else the one written down from docs/decisions.md (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench.report.results import Result, get, suite_result, sweep_point


def _side_cores(cores: Result) -> str:
    parts = [f"{name} {cores[key]:.2f}" for key, name in (
        ("responder", "its responder"), ("callers", "the callers"), ("broker", "the broker"))
        if isinstance(cores.get(key), (int, float))]
    return f"{cores['machine']:.2f} ({', '.join(parts)})"


def _point_cores(sweep: str, x: float, unit: str) -> Callable[[Result | None], str | None]:
    """Where the cores went at a sweep's point, each side loaded in turn (``bench.cpu``)."""
    def why(result: Result | None) -> str | None:
        chosen, _ = sweep_point(result, sweep, x)
        raw, mesh = get(chosen, "cores", "raw"), get(chosen, "cores", "mesh")
        if chosen is None or not isinstance(raw, Mapping) or not isinstance(mesh, Mapping) \
                or not all(isinstance(side.get("machine"), (int, float)) for side in (raw, mesh)):
            return None
        return (f"this run at {chosen['x']:g} {unit}: cores busy on the machine's "
                f"{mesh.get('cores', 0):g}, with raw loaded {_side_cores(raw)}, with the mesh "
                f"{_side_cores(mesh)}; what one side adds on a machine this busy is its "
                "queue as much as its work")
    return why


_WORKER_PATH = ("the worker's per-message Python path: 7-11x raw aiokafka's CPU per request "
                "(the worker rows measure it in each run; profile by area in "
                "docs/decisions.md, 'Where a worker's time goes')")
_EDGE_BUS = ("the in-memory mesh call alone (the 'bus' row: caller, worker and reply, no HTTP) "
             "is over 2x the bare handler")
# Why a target is missed on this machine, from the measurements written down in
# docs/decisions.md; shown only next to a missed row.
WHY_MISSED: Mapping[str, str] = {
    "mesh added p50 (request/reply)": _WORKER_PATH + ", on 2 cores shared with the broker",
    "request/reply p99 / raw p99": "one slow spell of the 2 shared cores decides a p99",
    "p50 at 1,000 concurrent callers / raw": "the worker is saturated, latency is its queue: "
    + _WORKER_PATH,
    "p99 at 1,000 req/s offered / raw": "1,000 req/s is near what this 2-core machine runs "
    "with either side loaded (stop 28: ~1.55 cores busy with raw aiokafka, ~1.75 with the "
    "mesh, the broker ~0.5 of it): queueing",
    "mesh publish rate / raw": "the mesh's own path per event (envelope, JSON, telemetry, ~10 "
    "CloudEvents headers: more bytes than a 200 B value; raw sends the value alone); the "
    "signature is shared by a batch (~10 us an event, was ~28 alone)",
    "answered/s at 100 callers, one worker process / raw": _WORKER_PATH,
    "answered/s at 100 callers, 2 worker processes / 1": "no idle core: callers, broker and "
    "worker already take 1.7-1.8 of the 2 cores (and two processes split each caller's "
    "batches: fewer messages per signature)",
    "pair-mac: mesh added p50 (request/reply)": _WORKER_PATH,
    "pair-mac: request/reply p99 / raw p99": "one slow spell of the 2 shared cores decides a p99",
    "pair-mac: answered/s at 100 callers, one worker process / raw": _WORKER_PATH,
    "gateway p50 / bare FastAPI+Mangum p50": _EDGE_BUS,
    "gateway p50 / bare (issue 15)": _EDGE_BUS,
    "the edge alone (auth, bucket, validation) / bare": "its middlewares, each removed in turn "
    "(stop 27, same process, 1.41x with all): the trace context ~13 us (the incoming "
    "traceparent's parse, the parent context, the answer's header), the envelope (request id, "
    "CORS, body limit) ~9, metrics ~0.7 without an SDK; with none at all 1.13x",
    "JWT route / bare": _EDGE_BUS + "; the JWT itself is cached",
    "gateway cold start / bare cold start": "the imports a deployment needs before its first "
    "answer beyond FastAPI's: the mesh (policy models, keys, client; Python 3.11 takes "
    "0.2-0.5 ms to make each of its ~40 dataclasses), cryptography for JWTs and keys; no "
    "longer among them: botocore's session (stop 29), PyJWT and its x509 import, and the "
    "routes' validators, now generated at deploy (stop 30); this suite's log lists them by "
    "package (-X importtime)",
    "POST /v1/orders p50 - echo Lambda p50, same HTTP API": "per hop in bench.edge_hops "
    "(stop 28's run): outside the gateway's span 9.4 ms, the Lambda runtime and the span flush "
    "to the collector, against the echo Lambda's whole call of 7.3 ms; four Kafka hops over "
    "SASL_SSL 2.3 ms; the worker's idempotency claim and completion on the emulator's DynamoDB "
    "1.9 ms (~5 ms through botocore: the dynamodb_client suite)",
    "worker RSS growth between checkpoints": "read the run's python_blocks_at: a flat count "
    "of live objects means the allocators (the spread between runs is ~1 %), a growing one a "
    "structure that is not bounded by count (stop 26 found the retry budget's window so)",
}


def cpu_per_request(row: Result | None) -> tuple[float, float, float, float] | None:
    """A worker_procs row's microseconds of a core per request: the mesh's and raw's workers,
    then their callers (None when the row does not have all four)."""
    figures = [get(row, "cpu_us_per_request", side, part) for part in ("responder", "callers")
               for side in ("mesh", "raw")]
    if not all(isinstance(f, (int, float)) for f in figures):
        return None
    worker, raw_worker, callers, raw_callers = (float(f) for f in figures)
    return worker, raw_worker, callers, raw_callers


def _cpu_per_request(result: Result | None) -> str | None:
    """The one-process point's CPU per request of both sides, as this run measured it."""
    figures = cpu_per_request(get(result, "by_processes", "1"))
    if figures is None:
        return None
    worker, raw_worker, callers, raw_callers = figures
    return (f"this run, per answered request: the mesh worker {worker:.0f} us of a core vs "
            f"raw {raw_worker:.0f} us ({worker / raw_worker:.1f}x), the mesh callers "
            f"{callers:.0f} us vs raw {raw_callers:.0f} us, on 2 cores shared with the broker")


def _publish_per_event(result: Result | None) -> str | None:
    """What an event cost each side in this run, in microseconds of the publishing process's
    wall time at its rate (the broker's share included for both)."""
    raw, mesh = get(result, "raw_publish_per_s"), get(result, "mesh_publish_per_s")
    if not isinstance(raw, (int, float)) or not isinstance(mesh, (int, float)) or not (
            raw > 0 and mesh > 0):
        return None
    return (f"this run: {1e6 / mesh:.0f} us an event against raw's {1e6 / raw:.0f} us (0.7x "
            f"allows {1e6 / (0.7 * raw):.0f}); the {1e6 / mesh - 1e6 / raw:.0f} us more are "
            + WHY_MISSED["mesh publish rate / raw"])


def _round_p99s(result: Result | None) -> str | None:
    """Each latency round's p99 ratio, from which the pooled one is made."""
    ratios = get(result, "round_p99_ratios")
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) for r in ratios):
        return None
    return (f"this run's {len(ratios)} rounds, mesh p99 over raw p99 each: "
            f"{', '.join(f'{r:.2f}x' for r in ratios)} (best {min(ratios):.2f}x): "
            + WHY_MISSED["request/reply p99 / raw p99"])


def _gateway_parts(result: Result | None) -> str | None:
    """Where the gateway's time goes in this run: the bus alone and the edge alone, each
    over the bare handler, and what signing as a stack does adds."""
    bare, bus, edge = (get(result, f"{side}_p50_us") for side in ("bare", "bus", "edge"))
    if not all(isinstance(v, (int, float)) for v in (bare, bus, edge)) or not bare:
        return None
    text = (f"this run: the in-memory mesh call alone (the 'bus' row: caller, worker and "
            f"reply, no HTTP) {bus / bare:.2f}x the bare handler ({bus:.0f} vs {bare:.0f} us), "
            f"the edge alone {edge / bare:.2f}x")
    signed, pair = get(result, "signed_p50_us"), get(result, "pair_p50_us")
    if isinstance(signed, (int, float)):
        text += (f"; with Ed25519 messages and the worker's idempotency record, as a stack "
                 f"runs it, the gateway is {signed / bare:.2f}x ({signed:.0f} us)")
        if isinstance(pair, (int, float)):
            text += f", with per-pair MACs {pair / bare:.2f}x ({pair:.0f} us)"
    return text


def _jwt_parts(result: Result | None) -> str | None:
    parts = _gateway_parts(result)
    return None if parts is None else parts + "; the JWT itself is cached"


def _two_processes(result: Result | None) -> str | None:
    """Where the cores went with two worker processes against one, as this run measured."""
    one, two = (get(result, "by_processes", n, "mesh_cores") for n in ("1", "2"))
    if not isinstance(one, Mapping) or not isinstance(two, Mapping) or not all(
            isinstance(side.get(k), (int, float)) for side in (one, two)
            for k in ("machine", "responder", "callers")):
        return None
    per_request = [get(result, "by_processes", n, "cpu_us_per_request", "mesh", "responder")
                   for n in ("1", "2")]
    text = (f"this run: the machine's {two.get('cores', 0):.0f} cores were {one['machine']:.2f} "
            f"busy with one worker process (it {one['responder']:.2f}, the callers "
            f"{one['callers']:.2f}) and {two['machine']:.2f} with two (they "
            f"{two['responder']:.2f}, the callers {two['callers']:.2f}): no idle core to add")
    if all(isinstance(v, (int, float)) for v in per_request):
        text += (f"; a request cost the workers {per_request[0]:.0f} us of a core with one, "
                 f"{per_request[1]:.0f} with two (each process's batches, and so its shared "
                 "signatures, are smaller)")
    return text


def _cold_phases(result: Result | None) -> str | None:
    """The gateway's cold start against the bare one's, phase by phase, as this run timed it."""
    bare, gateway = (get(result, "cold_phases_ms", side) for side in ("bare", "gateway"))
    phases = ("interpreter", "imports", "build", "first_call")
    if not isinstance(bare, Mapping) or not isinstance(gateway, Mapping) or not all(
            isinstance(side.get(p), (int, float)) for side in (bare, gateway) for p in phases):
        return None
    parts = ", ".join(f"{p.replace('_', ' ')} {gateway[p]:.0f} vs {bare[p]:.0f} ms"
                      for p in phases)
    extra = get(result, "cold_import_extra_ms")
    packages = "" if not isinstance(extra, Mapping) or not extra else (
        "; its imports beyond the bare app's, by package (-X importtime, self time): "
        + ", ".join(f"{name} +{ms:.0f} ms" for name, ms in extra.items()
                    if isinstance(ms, (int, float))))
    return (f"this run, median phases of the gateway against the bare app: {parts}"
            f"{packages}; " + WHY_MISSED["gateway cold start / bare cold start"])


# Reasons computed from the suite's own result, preferred to the written ones when present.
MEASURED_WHY: Mapping[str, Callable[[Result | None], str | None]] = {
    "gateway p50 / bare FastAPI+Mangum p50": _gateway_parts,
    "gateway p50 / bare (issue 15)": _gateway_parts,
    "mesh publish rate / raw": _publish_per_event,
    "request/reply p99 / raw p99": _round_p99s,
    "pair-mac: request/reply p99 / raw p99": _round_p99s,
    "p99 at 1,000 req/s offered / raw": _point_cores("load", 1000, "req/s offered"),
    "p50 at 1,000 concurrent callers / raw": _point_cores("callers", 1000, "callers"),
    "JWT route / bare": _jwt_parts,
    "answered/s at 100 callers, one worker process / raw": _cpu_per_request,
    "answered/s at 100 callers, 2 worker processes / 1": _two_processes,
    "gateway cold start / bare cold start": _cold_phases,
    "pair-mac: answered/s at 100 callers, one worker process / raw": _cpu_per_request,
}


def _signed_vs_pair(result: Result | None, pair: Result | None) -> str | None:
    """The signed round trip's added p50 against the per-pair MAC one of the same run."""
    signed_ms, pair_ms = get(result, "added_p50_ms"), get(pair, "added_p50_ms")
    if not isinstance(signed_ms, (int, float)) or not isinstance(pair_ms, (int, float)):
        return None
    return (f"this run with per-pair MACs instead of Ed25519: +{pair_ms:.3f} ms, so "
            f"{signed_ms - pair_ms:.3f} ms of the +{signed_ms:.3f} ms is the two signatures "
            "and two verifications on a round trip's path (libsodium, ~21 and ~58 us of a core "
            "each here; a message alone in its event-loop turn shares no signature); the rest: "
            + _WORKER_PATH)


_HOPS = ("outside_span", "echo", "edge_before_call", "edge_after_call", "produce",
         "to_worker", "worker", "worker_store", "reply_produce", "reply_back")


def _http_hops(result: Result | None, hops: Result | None) -> str | None:
    """The HTTP path's time by hop, from the traces ``bench.edge_hops`` read in the same run."""
    ms = {hop: get(hops, f"{hop}_p50_ms") for hop in _HOPS}
    if not all(isinstance(v, (int, float)) for v in ms.values()):
        return None
    kafka = ms["produce"] + ms["to_worker"] + ms["reply_produce"] + ms["reply_back"]
    return (f"this run's traces ({get(hops, 'traces')}, p50 of each hop): outside the "
            f"gateway's span {ms['outside_span']:.2f} ms (the Lambda runtime and the span "
            f"flush; the echo Lambda's whole call {ms['echo']:.2f} ms), the edge "
            f"{ms['edge_before_call']:.2f} ms before the mesh call and "
            f"{ms['edge_after_call']:.2f} after, four Kafka hops "
            f"over SASL_SSL {kafka:.2f} ms (produce {ms['produce']:.2f}, to the worker "
            f"{ms['to_worker']:.2f}, the reply's produce {ms['reply_produce']:.2f}, back "
            f"{ms['reply_back']:.2f}), the worker {ms['worker']:.2f} ms of which its "
            f"idempotency claim and completion {ms['worker_store']:.2f} ms")


# Reasons read from another suite of the same run: (that suite, the reason from both results).
PAIRED_WHY: Mapping[str, tuple[str, Callable[[Result | None, Result | None], str | None]]] = {
    "mesh added p50 (request/reply)": ("mesh_vs_raw_pair", _signed_vs_pair),
    "POST /v1/orders p50 - echo Lambda p50, same HTTP API": ("edge_hops", _http_hops),
}


def why(name: str, result: Result | None, suites: Mapping[str, Mapping[str, Any]]) -> str:
    measured = MEASURED_WHY[name](result) if name in MEASURED_WHY else None
    if measured is None and name in PAIRED_WHY:
        other, paired = PAIRED_WHY[name]
        measured = paired(result, suite_result(suites, other))
    return measured or WHY_MISSED.get(name, "")
