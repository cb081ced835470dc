"""report.json -> report.md (pure: a dict in, markdown text out)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.report.reasons import cpu_per_request
from bench.report.results import suite_result
from bench.sweep_plan import SWEEPS

SWEEP_AXIS = {"load": "offered load (req/s, open loop)", "callers": "concurrent callers",
              "payload": "payload (bytes)", "partitions": "partitions"}


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value).replace("|", "\\|")


def met(value: bool | None) -> str:
    return "not measured" if value is None else ("**met**" if value else "**MISSED**")


def percent(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def ratio(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _result(report: Mapping[str, Any], suite: str) -> Mapping[str, Any] | None:
    return suite_result(report["suites"], suite)


def header(report: Mapping[str, Any]) -> list[str]:
    stamp = report["stamp"]
    machine = stamp["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in stamp["versions"].items())
    return [
        "# meshgate benchmark report",
        "",
        f"Mode **{report['mode']}**, generated {stamp['generated_at']} at commit "
        f"`{stamp['commit']}` in {report['seconds']:.0f} s.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}, "
        f"Python {machine['python']}.",
        f"Versions: {versions}.",
        "",
        "Every comparison is against a baseline measured in the same run (ABBA rounds); the "
        "machine is shared, so absolute figures are indicative and ratios are what to read.",
        "",
    ]


def overview(report: Mapping[str, Any]) -> list[str]:
    rows = [(name, "ok" if e["ok"] else f"FAILED ({e['error']})", e["seconds"], e["log"])
            for name, e in report["suites"].items()]
    targets = [(t["suite"], t["name"], t["value"], t["target"], met(t["met"]), t.get("why", ""))
               for t in report["targets"]]
    return ["## Suites", "", table(("suite", "status", "seconds", "log"), rows), "",
            "## Targets", "", table(("suite", "what", "measured", "target", "",
                                     "why, where missed (measured)"), targets), ""]


def memory(report: Mapping[str, Any]) -> list[str]:
    r = _result(report, "memory")
    if r is None:
        return ["## Memory", "", "Not measured (the suite failed).", ""]
    gw, worker, bounds = r["gateway"], r["worker"], r["bounds"]
    lines = ["## Memory", "",
             table(("figure", "value"), [
                 ("gateway VmRSS after imports / build / first request (MiB)",
                  f"{gw['imported_mb']} / {gw['built_mb']} / {gw['first_request_mb']}"),
                 (f"gateway VmRSS after {gw['requests']} requests (MiB)",
                  f"{gw['after_requests_mb']} (peak {gw['peak_mb']}, target < "
                  f"{gw['target_mb']:g}: {met(gw['rss_ok'])})"),
                 ("worker VmRSS at handled messages (MiB)",
                  ", ".join(f"{k}: {v}" for k, v in worker.get("rss_mb_at", {}).items())),
                 ("worker live interpreter blocks at handled messages",
                  ", ".join(f"{k}: {v:,}" for k, v in worker.get("python_blocks_at", {}).items())
                  or "not measured"),
                 ("worker growth", f"{percent(worker['growth'])} (target < "
                  f"{worker['target_growth']:.0%}: {met(worker['growth_ok'])})"),
                 ("worker load", f"{worker['load']['sent']} requests, "
                  f"{worker['load']['per_s']}/s, {worker['concurrency']} in flight, "
                  f"{worker['load']['errors']} errors"),
                 ("worker replay guard: largest / bound",
                  f"{worker.get('replay_max')} / {worker['replay_bound']} "
                  f"(window {worker['window_ms']} ms)"),
                 ("worker idempotency store: largest / bound",
                  f"{worker.get('store_max')} / {worker['store_bound']}"),
             ]), "",
             f"Caches under a simulated {bounds['rate_per_s']:,.0f} msg/s, "
             f"{bounds['messages']:,} ids:", "",
             table(("cache", "largest", "bound", "within"),
                   [(c["name"], c["max_size"], c["bound"], met(c["ok"]))
                    for c in bounds["caches"]]), ""]
    return lines


def mesh_vs_raw(report: Mapping[str, Any], suite: str = "mesh_vs_raw",
                title: str = "Mesh vs raw aiokafka") -> list[str]:
    r = _result(report, suite)
    if r is None:
        return [f"## {title}", "", "Not measured (the suite failed).", ""]
    return [f"## {title}", "",
            f"{r['rate_per_s']:g} req/s open loop, {r['size_bytes']} B values, "
            f"{r['partitions']} partitions, {r['rounds']} ABBA rounds; publish "
            f"{r['messages']} events.", "",
            table(("", "raw", "mesh", "mesh/raw"), [
                ("round trip p50 (ms)", r["raw_p50_ms"], r["mesh_p50_ms"],
                 ratio(r["p50_ratio"])),
                ("round trip p99 (ms)", r["raw_p99_ms"], r["mesh_p99_ms"],
                 ratio(r["p99_ratio"])),
                ("publish (msg/s)", r["raw_publish_per_s"], r["mesh_publish_per_s"],
                 ratio(r["publish_ratio"])),
            ]), ""]


def sweeps(report: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    r = _result(report, "sweeps")
    lines = ["## Sweeps on the real broker (mesh vs raw)", ""]
    if r is None:
        return [*lines, "Not measured (the suite failed).", ""]
    for sweep in SWEEPS:
        points = [p for p in r["points"] if p["sweep"] == sweep]
        if not points:
            continue
        lines += [f"### {SWEEP_AXIS[sweep]}", ""]
        if sweep in plots:
            lines += [f"![{sweep}]({plots[sweep]})", ""]
        lines.append(table(
            (SWEEP_AXIS[sweep], "raw p50", "raw p99", "mesh p50", "mesh p99", "p50 mesh/raw",
             "raw answered/s", "mesh answered/s", "raw responder MiB",
             "mesh responder MiB", "machine cores busy: raw / mesh"),
            [(f"{p['x']:g}", p["raw"].get("p50_ms"), p["raw"].get("p99_ms"),
              p["mesh"].get("p50_ms"), p["mesh"].get("p99_ms"), ratio(p["ratio"]["p50"]),
              p["raw"]["per_s"], p["mesh"]["per_s"], p["rss_mb"].get("raw_responder"),
              p["rss_mb"].get("mesh_responder"), _busy(p)) for p in points]))
        lines.append("")
    return lines


def _busy(point: Mapping[str, Any]) -> str:
    """The machine's busy cores while each side of a sweep point was loaded."""
    cores = point.get("cores") or {}
    raw, mesh = (cores.get(side) or {} for side in ("raw", "mesh"))
    if "machine" not in raw or "machine" not in mesh:
        return "n/a"
    return f"{raw['machine']:.2f} / {mesh['machine']:.2f} of {mesh.get('cores', 0):g}"


def _cores(row: Mapping[str, Any]) -> str:
    used = row.get("mesh_cores") or {}
    if not used:
        return "n/a"
    return (f"{used.get('callers', 0):.2f} / {used.get('responder', 0):.2f} / "
            f"{used.get('broker', 0):.2f} / {used.get('machine', 0):.2f} of "
            f"{used.get('cores', 0):g}")


def _cpu(row: Mapping[str, Any]) -> str:
    figures = cpu_per_request(row)
    if figures is None:
        return "n/a"
    worker, raw_worker, callers, raw_callers = figures
    return f"{worker:.0f} / {raw_worker:.0f}, {callers:.0f} / {raw_callers:.0f}"


def worker_procs(report: Mapping[str, Any], suite: str = "worker_procs",
                 title: str = "Worker processes (one echo service, 1 and 2 processes in one "
                 "group)") -> list[str]:
    r = _result(report, suite)
    lines = [f"## {title}", ""]
    if r is None:
        return [*lines, "Not measured (the suite failed).", ""]
    lines += [f"{r['callers']} closed-loop callers, {r['partitions']} partitions, "
              f"{r['rounds']} round(s) of raw, mesh, mesh, raw ({r['seconds']:g} s each); "
              "raw is one aiokafka responder process throughout.", "",
              table(("worker processes", "raw answered/s", "mesh answered/s",
                     "mesh/raw answered/s", "mesh / one process (vs raw)", "raw p99 (ms)",
                     "mesh p99 (ms)", "p99 mesh/raw",
                     "cores, mesh loaded: callers / workers / broker / machine",
                     "mesh answered per worker core-second",
                     "us of a core per request: workers mesh / raw, callers mesh / raw"),
                    [(n, row["raw_per_s"], row["mesh_per_s"], ratio(row["per_s_ratio"]),
                      ratio(row["mesh_per_s_over_one_process"]), row["raw_p99_ms"],
                      row["mesh_p99_ms"], ratio(row["p99_ratio"]), _cores(row),
                      row.get("mesh_per_worker_core_s"), _cpu(row))
                     for n, row in r["by_processes"].items()]), ""]
    return lines


GATEWAY_SIDES = (
    "gateway: `POST /v1/partner/orders` answered by the orders worker on an in-memory bus, "
    "messages unsigned (the issue's rows); signed: the same with Ed25519 messages, the edge's "
    "assertion of the caller and the worker's idempotency record (in memory), as a stack runs "
    "it; pair: the same with the gateway and orders accepting per-pair MACs "
    "(`message_auth: pair-mac`); edge: the gateway with a mesh client that answers at once; "
    "jwt: the route with `auth: jwt`; bus: `orders.create` alone, mesh client to worker, no HTTP.")


def gateway(report: Mapping[str, Any]) -> list[str]:
    r = _result(report, "gateway_overhead")
    if r is None:
        return ["## Gateway vs bare FastAPI + Mangum", "", "Not measured.", ""]
    sides = [s for s in ("bare", "gateway", "signed", "pair", "edge", "jwt", "bus")
             if f"{s}_p50_us" in r]
    bare = r["bare_p50_us"]
    rows = [(s, r[f"{s}_p50_us"], r[f"{s}_p90_us"], r[f"{s}_p99_us"],
             ratio(r[f"{s}_p50_us"] / bare if bare else None)) for s in sides]
    return ["## Gateway handler vs bare FastAPI + Mangum (in-process)", "",
            table(("side", "p50 (us)", "p90 (us)", "p99 (us)", "p50 / bare"), rows), "",
            GATEWAY_SIDES, "",
            table(("cold start (median ms)", "bare", "gateway", "gateway/bare"),
                  [("spawn to first answer", r["bare_cold_ms"], r["gateway_cold_ms"],
                    ratio(r["cold_ratio"]))]), ""]


def through_emulator(report: Mapping[str, Any]) -> list[str]:
    lines = ["## End to end through the emulated API Gateway", ""]
    e2e = _result(report, "e2e_echo")
    if e2e is not None:
        lines += [table(("route", "p50 (ms)", "p90 (ms)", "p99 (ms)"), [
            ("POST /bench/echo (echo Lambda, baseline)", e2e["echo_p50_ms"],
             e2e["echo_p90_ms"], e2e["echo_p99_ms"]),
            ("POST /v1/orders (gateway + Kafka + worker)", e2e["orders_p50_ms"],
             e2e["orders_p90_ms"], e2e["orders_p99_ms"]),
        ]), "", f"orders/echo: p50 {ratio(e2e['p50_ratio'])}, p99 {ratio(e2e['p99_ratio'])}; "
            f"added p50 {e2e['added_p50_ms']} ms ({e2e['count']} calls per route).", ""]
    else:
        lines += ["Echo comparison not measured (the suite failed).", ""]
    sk = _result(report, "skeleton")
    if sk is not None:
        lines += [table(("route", "p50 (ms)", "p90 (ms)", "p99 (ms)"), [
            ("GET /healthz (gateway, no bus)", sk["healthz_p50_ms"], sk["healthz_p90_ms"],
             sk["healthz_p99_ms"]),
            ("POST /v1/orders", sk["orders_p50_ms"], sk["orders_p90_ms"], sk["orders_p99_ms"]),
        ]), "", f"orders/healthz p50: {ratio(sk['orders_over_healthz_p50'])}.", ""]
    return lines


def dynamodb_client(report: Mapping[str, Any]) -> list[str]:
    r = _result(report, "dynamodb_client")
    if r is None:
        return []
    rows = [(f"{level} in flight", side, found["p50_ms"], found["p99_ms"], found["per_s"],
             found["cpu_us_per_request"])
            for level, point in r["points"].items() for side in ("botocore", "fast")
            for found in (point[side],)]
    ratios = "; ".join(f"{level} in flight: p50 {ratio(p['ratios']['p50'])}, CPU "
                       f"{ratio(p['ratios']['cpu'])}, req/s {ratio(p['ratios']['per_s'])}"
                       for level, p in r["points"].items())
    return ["## A worker's durable idempotency per request (emulator's DynamoDB)", "",
            "Claim and completion (two conditional PutItems, as `ServiceWorker` makes around a "
            "handler with side effects), through botocore and through the fast item calls "
            "(`functions.shared.aws_json`), ABBA rounds.", "",
            table(("load", "client", "p50 (ms)", "p99 (ms)", "requests/s",
                   "client CPU per request (us)"), rows), "", f"fast/botocore: {ratios}.", ""]


def render(report: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The markdown; ``plots`` maps a plot name to its path relative to the report."""
    lines = [*header(report), *overview(report), *memory(report)]
    if "memory" in plots:
        lines += [f"![memory]({plots['memory']})", ""]
    lines += [*mesh_vs_raw(report), *sweeps(report, plots), *worker_procs(report),
              *mesh_vs_raw(report, "mesh_vs_raw_pair",
                           "Mesh vs raw aiokafka, per-pair MACs (message_auth: pair-mac)"),
              *worker_procs(report, "worker_procs_pair",
                            "One worker process, per-pair MACs (message_auth: pair-mac)"),
              *gateway(report),
              *through_emulator(report), *dynamodb_client(report)]
    if "ratios" in plots:
        lines += ["## Ratios against the baselines", "", f"![ratios]({plots['ratios']})", ""]
    return "\n".join(lines).rstrip() + "\n"
