"""The bench report's pure parts: reading /proc status, a suite's outcome, targets, sweep
points, the markdown; and the echo function and its stack part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import rss
from bench.memory import growth
from bench.report.reasons import WHY_MISSED
from bench.report.render import render
from bench.report.runner import last_json, outcome
from bench.report.suites import NAMES, SUITES
from bench.report.targets import targets
from bench.sweep_plan import FAST, FULL, point, side_summary
from functions.bench_echo.handler import handler
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.functions import BENCH_ECHO, FUNCTIONS, GATEWAY
from infra.stack.model import MeshConfig
from infra.stack.parts.bench_echo import FUNCTION, ROUTE, ROUTE_PATH, part
from infra.stack.template import stack_template

STATUS = "Name:\tpython\nVmPeak:\t  300 kB\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads: 3\n"


def test_status_fields_are_read_in_kib() -> None:
    assert rss.parse_status(STATUS) == {"VmPeak": 300, "VmHWM": 2048, "VmRSS": 1024}
    assert rss.rss_mb() > 1  # this process, from /proc/self/status


def test_a_suite_succeeds_only_with_exit_0_and_a_json_line() -> None:
    out = "noise\n{\"a\": 1}\n{not json\n"
    assert last_json(out) == {"a": 1}
    assert outcome(0, out, 1.0, "log", [])["ok"]
    assert outcome(0, "no json", 1.0, "log", [])["error"] == "no JSON line in its output"
    assert outcome(2, out, 1.0, "log", [])["error"] == "exited 2"
    assert outcome(None, out, 1.0, "log", [])["error"] == "timed out"
    assert outcome(0, '{"ok": false}', 1.0, "log", [])["error"] == "reported ok: false"


def test_every_suite_has_a_fast_mode_and_unique_name() -> None:
    assert len(set(NAMES)) == len(SUITES)
    for suite in SUITES:
        assert suite.timeout(fast=True) < suite.timeout(fast=False)
        assert ("--output" in suite.argv(True, Path("/tmp"))) == suite.writes_output
    assert FAST.base_partitions in FAST.partitions
    assert FULL.callers[-1] == 1000
    assert FULL.sizes[0] == 100
    assert FULL.sizes[-1] == 1_000_000


def test_sweep_points_carry_ratios_only_where_both_sides_answered() -> None:
    raw = side_summary([1.0, 2.0, 3.0], sent=3, errors=0, seconds=1.0)
    mesh = side_summary([2.0, 4.0, 6.0], sent=3, errors=0, seconds=1.0)
    p = point("load", 50, raw, mesh, {"caller": 40.0})
    assert p["ratio"] == {"p50": 2.0, "p99": 2.0, "per_s": 1.0}
    silent = point("load", 50, raw, side_summary([], 3, 3, 1.0), {})
    assert silent["ratio"]["p50"] is None


def test_worker_growth_is_relative_to_the_first_checkpoint() -> None:
    assert growth({"10": 100.0, "100": 105.0}, 10, 100) == pytest.approx(0.05)
    assert growth({"10": 100.0}, 10, 100) is None


def sample_report() -> dict[str, Any]:
    sweeps = {"points": [point(s, x, side_summary([1.0], 1, 0, 1.0),
                               side_summary([2.0], 1, 0, 1.0), {"mesh_responder": 50.0})
                         for s, x in (("load", 50), ("callers", 10), ("payload", 100),
                                      ("partitions", 6))], "ok": True}
    memory = {
        "gateway": {"requests": 1000, "imported_mb": 60.0, "built_mb": 62.0,
                    "first_request_mb": 63.0, "after_requests_mb": 70.0, "peak_mb": 71.0,
                    "target_mb": 128.0, "rss_ok": True},
        "worker": {"rss_mb_at": {"10000": 50.0, "100000": 52.0}, "growth": 0.04,
                   "python_blocks_at": {"10000": 275646, "100000": 278232},
                   "growth_ok": True, "target_growth": 0.1, "checkpoints": [10000, 100000],
                   "load": {"sent": 100000, "per_s": 1800, "errors": 0}, "concurrency": 200,
                   "replay_max": 9000, "replay_bound": 200000, "window_ms": 10000,
                   "store_max": 5000, "store_bound": 5000, "series": [[0, 48.0]]},
        "bounds": {"rate_per_s": 50000.0, "messages": 1000, "all_bounded": True,
                   "caches": [{"name": "g", "max_size": 5, "bound": 5, "ok": True}]},
        "targets_met": {"caches_bounded": True},
    }
    side = {"requests": 8, "p50_ms": 2.0, "p99_ms": 3.0, "per_s": 400.0,
            "cpu_us_per_request": 700.0}
    dynamodb = {"points": {"1": {"botocore": {**side, "p50_ms": 4.0}, "fast": side,
                                 "ratios": {"p50": 0.5, "p99": 1.0, "cpu": 0.35,
                                            "per_s": 2.0}}}}
    ok = {"ok": True, "error": None, "seconds": 1.0, "log": "x.log"}
    return {
        "mode": "fast", "seconds": 3.0, "ok": False,
        "stamp": {"generated_at": "now", "commit": "abc",
                  "machine": {"cpu": "cpu", "cores": 2, "system": "Linux", "python": "3.11"},
                  "versions": {"aiokafka": "1"}},
        "suites": {"sweeps": {**ok, "result": sweeps}, "memory": {**ok, "result": memory},
                   "dynamodb_client": {**ok, "result": dynamodb},
                   "mesh_vs_raw": {**ok, "ok": False, "error": "exited 1", "result": None}},
    }


def test_targets_and_markdown_from_a_report() -> None:
    report = sample_report()
    found = {t.name: t for t in targets(report["suites"])}
    assert found["gateway RSS after the requests"].met is True
    assert found["worker RSS growth between checkpoints"].value.startswith("+4.0%")
    assert found["mesh added p50 (request/reply)"].met is None  # the suite failed
    assert found["request/reply p99 / raw p99"].met is None
    # the fast plan has no 1,000-caller point: the largest it ran is judged, and named
    callers = found["p50 at 1,000 concurrent callers / raw"]
    assert (callers.value, callers.met) == ("2.00x at 10 (not 1000: the fast plan)", False)
    report["suites"]["sweeps"]["result"]["points"].append(point(
        "load", 1000, side_summary([10.0], 1, 0, 1.0), side_summary([15.0], 1, 0, 1.0), {}))
    load = {t.name: t for t in targets(report["suites"])}["p99 at 1,000 req/s offered / raw"]
    assert (load.value, load.met) == ("1.50x at 1000", True)
    report["targets"] = [t.__dict__ for t in found.values()]
    markdown = render(report, {"load": "report_plots/sweep_load.png"})
    assert "FAILED (exited 1)" in markdown
    assert "![load](report_plots/sweep_load.png)" in markdown
    assert "| 70.0 (peak 71.0, target < 128: **met**) |" in markdown
    assert "| worker live interpreter blocks at handled messages | 10000: 275,646, " \
           "100000: 278,232 |" in markdown
    assert "not measured" in markdown
    assert "| 1 in flight | botocore | 4.000 | 3.000 | 400.0 | 700.0 |" in markdown
    assert "fast/botocore: 1 in flight: p50 0.50x, CPU 0.35x, req/s 2.00x." in markdown
    json.dumps(report)  # what report.json holds stays JSON


def test_the_echo_function_answers_the_body() -> None:
    event = {"headers": {"content-type": "application/json"}, "body": '{"a":1}'}
    assert handler(event, None) == {"statusCode": 200,
                                     "headers": {"content-type": "application/json"},
                                     "body": '{"a":1}', "isBase64Encoded": False}


def test_the_echo_part_routes_in_the_gateway_api_beside_default() -> None:
    assert BENCH_ECHO in FUNCTIONS
    assert BENCH_ECHO.requirements == ()
    artifacts = {s.name: Artifact(s, Path(f"/tmp/{s.name}.zip"), "ab" * 32) for s in FUNCTIONS}
    mesh = MeshConfig(keyring={"keys": []}, access={"produce": {}})
    settings = Settings(stack_name="teststack")
    assert part({}, settings, mesh).resources == {}
    template = stack_template(artifacts[GATEWAY.name], settings, mesh, artifacts)
    resources = template["Resources"]
    assert resources[ROUTE]["Properties"]["RouteKey"] == f"ANY {ROUTE_PATH}"
    assert resources[ROUTE]["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    assert resources["DefaultRoute"]["Properties"]["RouteKey"] == "$default"
    assert resources[FUNCTION]["Properties"]["Handler"] == BENCH_ECHO.handler
    assert resources[FUNCTION]["Properties"]["Role"] != {"Fn::GetAtt": ["FunctionRole", "Arn"]}


def test_every_reason_names_a_target_and_is_shown_only_when_missed() -> None:
    from bench.report.targets import CHECKS

    assert set(WHY_MISSED) <= {name for _, name, _, _ in CHECKS}
    result = {"added_p50_ms": 0.9, "added_p50_ok": False, "p99_ratio": 1.1}
    found = {t.name: t for t in targets({"mesh_vs_raw": {"ok": True, "result": result}})}
    assert found["mesh added p50 (request/reply)"].why == WHY_MISSED[
        "mesh added p50 (request/reply)"]
    assert found["request/reply p99 / raw p99"].met is True
    assert found["request/reply p99 / raw p99"].why == ""
    assert found["mesh publish rate / raw"].met is None
    assert found["mesh publish rate / raw"].why == ""


def test_the_gateway_rows_give_this_runs_parts_as_their_reason() -> None:
    result = {"request_ratio": 4.4, "request_ratio_ok": False, "gateway_ratio_15_ok": False,
              "jwt_ratio": 4.4, "jwt_ratio_15_ok": False, "edge_ratio": 1.4,
              "edge_ratio_15_ok": True, "bare_p50_us": 80.0, "bus_p50_us": 200.0,
              "edge_p50_us": 112.0, "signed_p50_us": 720.0, "pair_p50_us": 520.0}
    found = {t.name: t for t in targets({"gateway_overhead": {"ok": True, "result": result}})}
    why = found["gateway p50 / bare (issue 15)"].why
    assert "'bus' row: caller, worker and reply, no HTTP) 2.50x the bare handler (200 vs 80 us)" \
        in why
    assert "the edge alone 1.40x" in why
    assert "as a stack runs it, the gateway is 9.00x (720 us), with per-pair MACs 6.50x " \
        "(520 us)" in why
    assert found["JWT route / bare"].why == why + "; the JWT itself is cached"
    assert found["the edge alone (auth, bucket, validation) / bare"].why == ""  # met
    sides = {f"{side}_p{q}_us": 100.0 + i for i, side in enumerate(
        ("bare", "gateway", "signed", "pair", "edge", "jwt", "bus")) for q in (50, 90, 99)}
    report = sample_report()
    report["suites"]["gateway_overhead"] = {"ok": True, "error": None, "seconds": 1.0,
                                            "log": "g.log", "result": {
        **sides, "bare_cold_ms": 200.0, "gateway_cold_ms": 300.0, "cold_ratio": 1.5}}
    report["targets"] = []
    markdown = render(report, {})
    assert "| signed | 102.0 | 102.0 | 102.0 | 1.02x |" in markdown
    assert "| pair | 103.0 | 103.0 | 103.0 | 1.03x |" in markdown
    assert "pair: the same with the gateway and orders accepting per-pair MACs" in markdown
    # a run without the bus side falls back to the written reason
    del result["bus_p50_us"]
    found = {t.name: t for t in targets({"gateway_overhead": {"ok": True, "result": result}})}
    assert found["gateway p50 / bare (issue 15)"].why.startswith("the in-memory mesh call alone")


def test_the_sweep_rows_say_where_the_cores_went() -> None:
    load = point("load", 1000, side_summary([10.0], 1, 0, 1.0), side_summary([25.0], 1, 0, 1.0),
                 {})
    load["cores"] = {
        "raw": {"callers": 0.5, "responder": 0.48, "broker": 0.5, "machine": 1.55, "cores": 2.0},
        "mesh": {"callers": 0.6, "responder": 0.65, "broker": 0.52, "machine": 1.8,
                 "cores": 2.0}}
    result = {"points": [load]}
    found = {t.name: t for t in targets({"sweeps": {"ok": True, "result": result}})}
    row = found["p99 at 1,000 req/s offered / raw"]
    assert row.met is False
    assert row.why == (
        "this run at 1000 req/s offered: cores busy on the machine's 2, with raw loaded 1.55 "
        "(its responder 0.48, the callers 0.50, the broker 0.50), with the mesh 1.80 (its "
        "responder 0.65, the callers 0.60, the broker 0.52); what one side adds on a machine "
        "this busy is its queue as much as its work")
    # a point measured without cores keeps the written reason
    del load["cores"]
    found = {t.name: t for t in targets({"sweeps": {"ok": True, "result": result}})}
    assert found["p99 at 1,000 req/s offered / raw"].why.startswith("1,000 req/s is near")
    load["cores"] = {"raw": {"machine": 1.5, "cores": 2.0}, "mesh": {"machine": 1.75,
                                                                    "cores": 2.0}}
    report = sample_report()
    report["suites"]["sweeps"]["result"]["points"].append(load)
    report["targets"] = []
    assert "| 1.50 / 1.75 of 2 |" in render(report, {})


def test_the_signed_round_trip_is_explained_by_the_pair_mac_one_of_the_same_run() -> None:
    signed = {"added_p50_ms": 0.606, "added_p50_ok": False, "p99_ratio": 1.2}
    pair = {"added_p50_ms": 0.411, "added_p50_ok": True, "p99_ratio": 1.2}
    suites = {"mesh_vs_raw": {"ok": True, "result": signed},
              "mesh_vs_raw_pair": {"ok": True, "result": pair}}
    why = {t.name: t for t in targets(suites)}["mesh added p50 (request/reply)"].why
    assert why.startswith("this run with per-pair MACs instead of Ed25519: +0.411 ms, so "
                          "0.195 ms of the +0.606 ms is the two signatures")
    suites["mesh_vs_raw_pair"]["ok"] = False  # no pair run: the written reason
    assert {t.name: t for t in targets(suites)}["mesh added p50 (request/reply)"].why == \
        WHY_MISSED["mesh added p50 (request/reply)"]


def test_the_two_process_row_says_where_the_cores_went() -> None:
    def row(responder: float, callers: float, machine: float, us: float) -> dict[str, Any]:
        return {"mesh_cores": {"responder": responder, "callers": callers, "machine": machine,
                               "cores": 1.98},
                "cpu_us_per_request": {"mesh": {"responder": us}},
                "per_s_ratio": 0.25, "mesh_per_s_over_one_process": 0.83}
    result = {"by_processes": {"1": row(0.83, 0.68, 1.73, 153.0),
                               "2": row(0.92, 0.62, 1.80, 199.4)}}
    found = {t.name: t for t in targets({"worker_procs": {"ok": True, "result": result}})}
    assert found["answered/s at 100 callers, 2 worker processes / 1"].why == (
        "this run: the machine's 2 cores were 1.73 busy with one worker process (it 0.83, the "
        "callers 0.68) and 1.80 with two (they 0.92, the callers 0.62): no idle core to add; "
        "a request cost the workers 153 us of a core with one, 199 with two (each process's "
        "batches, and so its shared signatures, are smaller)")
    del result["by_processes"]["2"]["mesh_cores"]
    found = {t.name: t for t in targets({"worker_procs": {"ok": True, "result": result}})}
    assert found["answered/s at 100 callers, 2 worker processes / 1"].why.startswith(
        "no idle core")


def test_the_cold_start_row_gives_this_runs_phases() -> None:
    phases = {"bare": {"interpreter": 19.0, "imports": 204.0, "build": 1.0, "first_call": 2.0},
              "gateway": {"interpreter": 19.0, "imports": 311.0, "standins": 10.0,
                          "build": 24.0, "first_call": 1.4}}
    result = {"cold_ratio": 1.57, "cold_ratio_ok": False, "cold_phases_ms": phases}
    found = {t.name: t for t in targets({"gateway_overhead": {"ok": True, "result": result}})}
    written = WHY_MISSED["gateway cold start / bare cold start"]
    assert found["gateway cold start / bare cold start"].why == (
        "this run, median phases of the gateway against the bare app: interpreter 19 vs 19 ms,"
        " imports 311 vs 204 ms, build 24 vs 1 ms, first call 1 vs 2 ms; " + written)
    result["cold_import_extra_ms"] = {"bus": 40.7, "cryptography": 22.9}
    found = {t.name: t for t in targets({"gateway_overhead": {"ok": True, "result": result}})}
    assert "first call 1 vs 2 ms; its imports beyond the bare app's, by package (-X importtime,"\
        " self time): bus +41 ms, cryptography +23 ms; " in found[
        "gateway cold start / bare cold start"].why
    del phases["bare"]["build"]
    found = {t.name: t for t in targets({"gateway_overhead": {"ok": True, "result": result}})}
    assert found["gateway cold start / bare cold start"].why == written


def test_the_http_row_is_explained_hop_by_hop_from_the_same_runs_traces() -> None:
    hops = {"traces": 40, "outside_span_p50_ms": 9.35, "echo_p50_ms": 7.26,
            "edge_before_call_p50_ms": 0.22, "edge_after_call_p50_ms": 0.15,
            "produce_p50_ms": 0.69, "to_worker_p50_ms": 0.63, "worker_p50_ms": 3.56,
            "worker_store_p50_ms": 1.94, "reply_produce_p50_ms": 0.59,
            "reply_back_p50_ms": 0.4}
    suites = {"e2e_echo": {"ok": True, "result": {"added_p50_ms": 8.39}},
              "edge_hops": {"ok": True, "result": hops}}
    name = "POST /v1/orders p50 - echo Lambda p50, same HTTP API"
    why = {t.name: t for t in targets(suites)}[name].why
    assert why.startswith("this run's traces (40, p50 of each hop): outside the gateway's "
                          "span 9.35 ms (the Lambda runtime and the span flush; the echo "
                          "Lambda's whole call 7.26 ms)")
    assert "four Kafka hops over SASL_SSL 2.31 ms (produce 0.69, to the worker 0.63" in why
    assert why.endswith("the worker 3.56 ms of which its idempotency claim and completion "
                        "1.94 ms")
    del hops["worker_store_p50_ms"]
    why = {t.name: t for t in targets(suites)}[name].why
    assert why.startswith("per hop in bench.edge_hops")


def test_the_publish_row_gives_this_runs_cost_per_event() -> None:
    result = {"raw_publish_per_s": 50_000, "mesh_publish_per_s": 20_000,
              "publish_ratio": 0.4, "publish_ratio_ok": False}
    found = {t.name: t for t in targets({"mesh_vs_raw": {"ok": True, "result": result}})}
    assert found["mesh publish rate / raw"].why == (
        "this run: 50 us an event against raw's 20 us (0.7x allows 29); the 30 us more are "
        + WHY_MISSED["mesh publish rate / raw"])
    result["mesh_publish_per_s"] = 0
    found = {t.name: t for t in targets({"mesh_vs_raw": {"ok": True, "result": result}})}
    assert found["mesh publish rate / raw"].why == WHY_MISSED["mesh publish rate / raw"]


def test_the_p99_rows_give_each_rounds_ratio() -> None:
    result = {"p99_ratio": 1.68, "round_p99_ratios": [1.1, 1.25, 3.4, 1.2]}
    suites = {"mesh_vs_raw": {"ok": True, "result": result},
              "mesh_vs_raw_pair": {"ok": True, "result": {**result, "p99_ratio": 1.5}}}
    found = {t.name: t for t in targets(suites)}
    written = WHY_MISSED["request/reply p99 / raw p99"]
    expected = ("this run's 4 rounds, mesh p99 over raw p99 each: 1.10x, 1.25x, 3.40x, 1.20x "
                "(best 1.10x): " + written)
    assert found["request/reply p99 / raw p99"].why == expected
    assert found["pair-mac: request/reply p99 / raw p99"].why == expected
    result["round_p99_ratios"] = [1.1, None]  # a round a side had no answer in
    assert {t.name: t for t in targets(suites)}["request/reply p99 / raw p99"].why == written
