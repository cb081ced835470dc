"""The meshgate CLI against the running stack."""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.kafka import acl_admin
from infra.policy.acls import (
    derive_acls,
    managed_principals,
    no_authorizer_sentence,
    plan_acls,
    plan_sentence,
)
from infra.policy.derive import topic_specs
from infra.policy.load import load_policy
from infra.settings import ROOT, Settings
from tests.support import MESHGATE, pid_alive, run

pytestmark = pytest.mark.e2e


def test_status_json(endpoint: str) -> None:
    result = run([str(MESHGATE), "status", "--json"])
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["endpoint"] == endpoint
    assert state["kafka"] == {
        "bootstrap": "127.0.0.1:9092", "running": True, "mesh": "SASL_SSL",
        "listeners": {"PLAINTEXT": "127.0.0.1:9092", "SASL_SSL": "127.0.0.1:9094",
                      "SSL": "127.0.0.1:9095"},
    }
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


def acls_in_place(settings: Settings) -> str:
    """The ACL sentence of a plan with nothing to do: the derived ACLs in place, or (a broker
    without an authorizer) that they are not in force."""
    policy = load_policy(ROOT / "policies")
    rules = derive_acls(policy, stack=settings.stack_name)  # with the stack's markers
    try:
        asyncio.run(acl_admin.plan_live(settings.kafka_bootstrap, rules,
                                        managed_principals(policy), settings=settings,
                                        stack=settings.stack_name))
    except acl_admin.NoAuthorizer:
        return no_authorizer_sentence(len(rules), settings.kafka_bootstrap)
    return plan_sentence(plan_acls(rules, [r.binding for r in rules], []))


def test_policy_check_plan_and_graph_against_the_running_stack(endpoint: str,
                                                               settings: Settings) -> None:
    check = run([str(MESHGATE), "policy", "check"])
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("policies are valid: ")
    topics = len(topic_specs(ROOT / "policies"))
    nothing = [f"No changes. The broker matches the policy ({topics} topics).",
               acls_in_place(settings)]  # infra.policy.acls: the ACL half of the plan
    plan = run([str(MESHGATE), "policy", "plan"])
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.splitlines() == nothing  # `meshgate up` applied the policies
    again = run([str(MESHGATE), "policy", "apply"])
    assert again.returncode == 0
    assert again.stdout.splitlines() == nothing
    graph = run([str(MESHGATE), "policy", "graph", "--format", "svg"])
    assert graph.returncode == 0
    root = ET.fromstring(graph.stdout)
    assert root.tag.endswith("svg")
    assert "orders.requests" in graph.stdout


@pytest.fixture
def own_policy(tmp_path: Path, settings: Settings) -> Iterator[tuple[Path, str]]:
    """A project root of its own whose policy declares topics under a fresh prefix (every
    topic under it is deleted afterwards): plan and apply change the live broker, never the
    stack's own topics."""
    prefix = f"e2eplan{uuid.uuid4().hex[:10]}"
    (tmp_path / "policies").mkdir()
    yield tmp_path, prefix

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            names = [n for n in await admin.list_topics() if n.startswith(prefix + ".")]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    asyncio.run(delete())


def test_plan_and_apply_speak_plainly_on_the_live_broker(own_policy: tuple[Path, str]) -> None:
    root, prefix = own_policy
    policy = root / "policies" / "mesh.yaml"
    env = {"MESHGATE_ROOT": str(root)}

    def meshgate(*args: str) -> list[str]:
        result = run([str(MESHGATE), "policy", *args], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.splitlines()

    policy.write_text(f"topics:\n  {prefix}.a: {{partitions: 1}}\n"
                      f"  {prefix}.b: {{partitions: 2}}\n")
    assert meshgate("plan") == [f"+ create {prefix}.a (1 partition)",
                                f"+ create {prefix}.b (2 partitions)",
                                "Plan: 2 to create, 0 to grow, 0 to delete."]
    assert meshgate("apply") == [
        f"+ create {prefix}.a (1 partition)", f"+ create {prefix}.b (2 partitions)",
        "Plan: 2 to create, 0 to grow, 0 to delete.",
        f"+ created {prefix}.a (1 partition)", f"+ created {prefix}.b (2 partitions)",
        "Apply complete: 2 created, 0 grown, 0 deleted. The broker matches the policy "
        "(2 topics).",
    ]
    assert meshgate("plan") == ["No changes. The broker matches the policy (2 topics)."]
    policy.write_text(policy.read_text().replace("{partitions: 1}", "{partitions: 3}"))
    assert meshgate("plan") == [f"~ {prefix}.a: partitions 1 -> 3",
                                "Plan: 0 to create, 1 to grow, 0 to delete."]
    assert meshgate("apply")[-1] == ("Apply complete: 0 created, 1 grown, 0 deleted. The broker "
                                     "matches the policy (2 topics).")
    assert meshgate("apply") == ["No changes. The broker matches the policy (2 topics)."]
