"""``make bench``'s fast mode in the default test run: every benchmark suite runs (tiny
sizes, on the real broker and through the emulator), succeeds, and lands in one report with
its plots, its targets and the memory figures. No timing is asserted: the report says
whether targets were met, the test only that they were measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report.suites import NAMES
from bench.sweep_plan import SWEEPS
from infra.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]
FAST_TIMEOUT_S = 240.0  # the fast mode takes ~30 s here; generous for a busy machine


def test_the_fast_report_runs_every_suite_and_writes_markdown_json_and_plots(
        infra_settings: Settings, bootstrap: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.report", "--fast", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=FAST_TIMEOUT_S, check=False)
    assert (tmp_path / "report.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    failed = {name: (entry["error"], (tmp_path / "report_logs" / f"{name}.log").read_text()
                     [-2000:]) for name, entry in report["suites"].items() if not entry["ok"]}
    assert not failed, failed
    assert done.returncode == 0, done.stdout[-3000:]
    assert report["mode"] == "fast"
    assert set(report["suites"]) == set(NAMES)
    assert {"cpu", "cores", "python"} <= set(report["stamp"]["machine"])
    assert {"aiokafka", "fastapi", "mangum", "kafka"} <= set(report["stamp"]["versions"])

    memory = report["suites"]["memory"]["result"]
    assert {"after_requests_mb", "peak_mb", "rss_ok", "target_mb"} <= set(memory["gateway"])
    assert {"rss_mb_at", "growth", "growth_ok", "replay_max", "replay_bound", "store_max",
            "store_bound"} <= set(memory["worker"])
    assert len(memory["worker"]["rss_mb_at"]) == 2
    assert memory["bounds"]["caches"]
    assert set(memory["targets_met"]) == {"gateway_rss_under_128mb",
                                          "worker_growth_under_10pct", "caches_bounded"}

    sweeps = report["suites"]["sweeps"]["result"]
    assert {p["sweep"] for p in sweeps["points"]} == set(SWEEPS)
    for p in sweeps["points"]:
        assert p["raw"]["answered"] > 0, p
        assert p["mesh"]["answered"] > 0, p
        assert "mesh_responder" in p["rss_mb"]
        for side in ("raw", "mesh"):  # where the cores went while each side was loaded
            assert {"callers", "responder", "machine", "cores"} <= set(p["cores"][side]), p
    for suite in ("mesh_vs_raw", "mesh_vs_raw_pair"):
        rounds = report["suites"][suite]["result"]
        assert len(rounds["round_p99_ratios"]) == rounds["rounds"], rounds
    gateway = report["suites"]["gateway_overhead"]["result"]
    assert set(gateway["seals"]) == {"signed", "pair"}  # each checked by the bench itself
    assert gateway["records"]["signed"] > 0
    e2e = report["suites"]["e2e_echo"]["result"]
    assert e2e["echo_p50_ms"] > 0
    assert e2e["orders_p50_ms"] > 0

    assert all(t["met"] is not None for t in report["targets"]), report["targets"]
    for name in report["plots"].values():
        assert (tmp_path / name).stat().st_size > 0
    markdown = (tmp_path / "report.md").read_text()
    assert "## Targets" in markdown
    assert "## Memory" in markdown
    assert all(f"]({name})" in markdown for name in report["plots"].values())
