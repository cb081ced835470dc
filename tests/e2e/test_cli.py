"""The meshgate CLI against the running stack."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.support import MESHGATE, pid_alive, run

pytestmark = pytest.mark.e2e


def test_status_json(endpoint: str) -> None:
    result = run([str(MESHGATE), "status", "--json"])
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["endpoint"] == endpoint
    assert state["kafka"] == {"bootstrap": "127.0.0.1:9092", "running": True}
    assert state["emulator"]["running"] is True
    assert pid_alive(state["workers"]["orders"])


def test_second_up_changes_nothing_and_restarts_nothing(endpoint: str) -> None:
    before = json.loads(run([str(MESHGATE), "status", "--json"]).stdout)
    result = run([str(MESHGATE), "up"], timeout_s=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka: already running" in result.stdout
    assert "emulator: already running" in result.stdout
    assert "topics: no changes" in result.stdout
    assert "stack meshgate: no changes" in result.stdout
    for worker in ("orders", "inventory", "gateway"):
        assert f"worker {worker}: already running" in result.stdout
    curl = [line for line in result.stdout.splitlines() if line.startswith("curl ")]
    assert len(curl) == 4  # the demo order, the aggregate, the async report, the partner order
    assert all(endpoint in line for line in curl)
    after = json.loads(run([str(MESHGATE), "status", "--json"]).stdout)
    assert after["workers"] == before["workers"]


def test_printed_curl_line_works(endpoint: str) -> None:
    result = run([str(MESHGATE), "up", "--no-demo"], timeout_s=600)
    curl = next(line for line in result.stdout.splitlines() if line.startswith("curl "))
    answer = run(["bash", "-c", curl + " -w '\\n%{http_code}'"])
    body, status = answer.stdout.rsplit("\n", 1)
    assert status == "201", answer.stdout + answer.stderr
    assert json.loads(body)["total"] == "24.98"


def test_policy_check_plan_and_graph_against_the_running_stack(endpoint: str) -> None:
    check = run([str(MESHGATE), "policy", "check"])
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("policy ok: ")
    plan = run([str(MESHGATE), "policy", "plan"])
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[0] == "empty"  # `meshgate up` applied the policies
    again = run([str(MESHGATE), "policy", "apply"])
    assert again.returncode == 0
    assert again.stdout.splitlines()[0] == "empty"
    graph = run([str(MESHGATE), "policy", "graph", "--format", "svg"])
    assert graph.returncode == 0
    root = ET.fromstring(graph.stdout)
    assert root.tag.endswith("svg")
    assert "orders.requests" in graph.stdout
