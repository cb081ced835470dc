"""The pure parts of the cluster chaos scenarios: what callers saw (error_window), which
scenarios a mode runs, the closing table, and a block of free ports for the three nodes."""

from __future__ import annotations

import socket
from typing import Any

from proof.chaos.__main__ import FULL_ONLY, SCENARIOS, chosen_scenarios
from proof.chaos.accounting import CallResult, Outcome, account
from proof.chaos.cluster_load import error_window
from proof.chaos.cluster_report import cluster_table
from proof.chaos.cluster_stack import free_block
from proof.chaos.load import Call
from proof.chaos.runner import ScenarioResult


def call(n: int, started: float, ended: float | None, outcome: str = "ok") -> Call:
    c = Call(n, started=started)
    c.ended = ended
    c.outcome = outcome  # type: ignore[assignment]
    return c


def test_error_window_spans_failed_and_slow_calls_apart() -> None:
    calls = [
        call(0, 0.0, 0.1),
        call(1, 1.0, 4.0),  # slow (3 s), succeeded
        call(2, 2.0, 12.0, "clear"),  # failed
        call(3, 5.0, 6.5),  # slow
        call(4, 7.0, 9.0, "clear"),
        call(5, 10.0, 10.2),
    ]
    seen = error_window(calls)
    assert seen.failed == 2
    assert seen.error_window_s == 10.0  # 2.0 .. 12.0
    assert seen.slow == 2
    assert seen.slow_window_s == 5.5  # 1.0 .. 6.5
    assert seen.slowest_ok_s == 3.0


def test_no_failures_no_window() -> None:
    seen = error_window([call(0, 0.0, 0.2), call(1, 1.0, 1.5)])
    assert (seen.failed, seen.error_window_s, seen.slow, seen.slow_window_s) == (0, 0.0, 0, 0.0)
    assert seen.as_dict()["slowest_ok_s"] == 0.5


def test_a_hung_call_counts_as_failed_up_to_its_start() -> None:
    seen = error_window([call(0, 3.0, None, "hung"), call(1, 1.0, 2.0, "clear")])
    assert seen.failed == 2
    assert seen.error_window_s == 2.0  # 1.0 .. 3.0 (the hung one never ended)


def test_fast_mode_leaves_the_cluster_out_unless_named() -> None:
    names = [n for n, _ in SCENARIOS]
    assert set(names) >= FULL_ONLY
    assert [n for n, _ in chosen_scenarios(False, None)] == names
    fast = [n for n, _ in chosen_scenarios(True, None)]
    assert fast == [n for n in names if n not in FULL_ONLY]
    assert [n for n, _ in chosen_scenarios(True, ["cluster-freeze"])] == ["cluster-freeze"]


def test_free_block_is_six_free_ports() -> None:
    base = free_block(6)
    for port in range(base, base + 6):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def scenario(name: str, outcomes: list[Outcome], fault: dict[str, Any]) -> ScenarioResult:
    calls = [CallResult(n, o, True, "" if o == "ok" else "DeadlineExceeded(deadline_exceeded)")
             for n, o in enumerate(outcomes)]
    effects = [n for n, o in enumerate(outcomes) if o == "ok"]
    return ScenarioResult(name, account(calls, effects), fault, True)


def test_the_closing_table_has_a_row_per_cluster_scenario_only() -> None:
    seen: dict[str, Any] = {"requests_seen": {"error_window_s": 26.7, "slowest_ok_s": 10.0},
            "events_seen": {"error_window_s": 0.0, "slowest_ok_s": 15.2}}
    results = [scenario("broker-restart", ["ok"], {}),
               scenario("cluster-freeze", ["ok", "ok", "clear"], seen),
               ScenarioResult("cluster-rolling-restart", None, {}, False, ["scenario failed: x"])]
    lines = cluster_table(results)
    assert lines[1].startswith("| scenario | offered | lost | duplicated |")
    assert lines[3:] == [
        "| cluster-freeze | 3 | 0 | 0 | 1 (yes) | 26.7 s / 0 s | 10 s / 15.2 s |",
        "| cluster-rolling-restart | did not run: scenario failed: x | | | | | |",
    ]
    assert cluster_table(results[:1]) == []
