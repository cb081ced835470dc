"""The chaos suite's fast mode (``python -m proof.chaos --fast``): every scenario on the real
broker and emulator with a small load. Asserts what must hold, not how fast: nothing lost,
nothing applied twice, every call ended with a reply or a clear error, and each scenario
really injected its fault (the broker and the emulator went down and came back, a worker
died of SIGKILL, handlers stalled past their lease while a rebalance moved them, the group's
members changed, an event subscriber was down for twice its freshness window, the
idempotency store's answers were lost after its writes landed). Private
brokers and emulators only; the shared ones are only loaded.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from proof.chaos.__main__ import chosen_scenarios
from tests.support import ROOT, run

pytestmark = pytest.mark.integration

# the fast mode leaves out the three-node cluster scenarios (make chaos runs them; the
# cluster script itself is tested in test_cluster_script.py)
SCENARIOS = chosen_scenarios(fast=True, only=None)
LAST_LINE = re.compile(r"chaos: scenarios=(\d+) offered=(\d+) lost=(\d+) duplicated=(\d+)")


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory,
             bootstrap: str, dynamodb: Any) -> tuple[str, list[dict[str, Any]]]:
    report = tmp_path_factory.mktemp("chaos") / "report.json"
    done = run([sys.executable, "-m", "proof.chaos", "--fast", "--report", str(report)],
               {"PYTHONPATH": str(ROOT)}, timeout_s=400)
    print(done.stdout)
    assert report.exists(), done.stdout + done.stderr
    return done.stdout, json.loads(Path(report).read_text())


def test_every_scenario_injected_its_fault_and_kept_every_request(
    fast_run: tuple[str, list[dict[str, Any]]],
) -> None:
    out, results = fast_run
    assert [r["name"] for r in results] == [name for name, _ in SCENARIOS]
    for result in results:
        counts = result["counts"]
        assert counts is not None, result["problems"]
        assert result["injected"], result
        assert result["problems"] == [], result
        assert counts["lost"] == 0, result
        assert counts["duplicated"] == 0, result
        assert counts["failed_unclear"] == 0, result
        assert counts["offered"] == counts["succeeded"] + counts["failed_clear"], result
        assert counts["stray"] == 0, result
    by_name = {r["name"]: r for r in results}
    # the outages were felt by the callers: calls failed or waited through them
    assert by_name["broker-restart"]["fault"]["calls_failed_or_waited_over_1s"] > 0
    assert by_name["emulator-restart"]["fault"]["store_errors_retried"] > 0
    # writes landed and their answers were lost, and the calls were still answered once
    lost = by_name["lost-answers"]["fault"]
    assert lost["dropped_answers"] > 0
    assert lost["claims_left_in_progress"] == 0
    assert by_name["worker-kill"]["fault"]["victim_exit"] == -9
    # one child of a two-process worker SIGKILLed: restarted, and back in the group
    procs = by_name["worker-procs-kill"]["fault"]
    assert procs["restart_logged"]
    assert procs["restarted_and_rejoined"]
    # the backlog outlived the freshness window twice over, and none of it was quarantined
    outage = by_name["long-outage"]["fault"]
    assert outage["oldest_backlog_age_ms"] >= 2 * outage["window_ms"]
    assert outage["quarantined_genuine"] == 0
    last = out.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match is not None, last
    assert match.group(1) == str(len(SCENARIOS))
    assert (match.group(3), match.group(4)) == ("0", "0")
    assert int(match.group(2)) == sum(r["counts"]["offered"] for r in results)
