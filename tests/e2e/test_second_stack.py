"""Two local stacks side by side (issue 12): a second stack, brought up by the project's own
CLI on free ports with its own local dir and stack name, serves a JWT call from ITS issuer,
sends its trace to ITS collector, leaves the first stack's emulator, broker and telemetry
alone, and stops completely (no process left).

Light on purpose (it runs in every CI run): a 384 MB broker heap, one worker set, the
broker's jars and the emulator's venv shared with the first stack (``MESHGATE_TOOLS_DIR``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.kafka import topics
from infra.settings import ROOT, Settings
from proof.procs import free_port

CLI = [str(Path(sys.executable).parent / "meshgate")]
STEP_TIMEOUT_S = 400.0
CALL_WITHIN_S = 120.0
TRACE_WITHIN_S = 60.0


@dataclass(frozen=True)
class SecondStack:
    env: dict[str, str]
    settings: Settings
    local_dir: Path  # MESHGATE_LOCAL_DIR of its processes (not of this one)
    endpoint: str


def _meshgate(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=STEP_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"meshgate {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _pids(local: Path) -> dict[str, int]:
    """Every pid the second stack's pidfiles name (workers, broker, emulator)."""
    files = [*local.glob("workers/*.pid"), local / "kafka" / "kafka.pid",
             local / "ministack" / "ministack.pid"]
    return {path.stem: int(path.read_text().strip()) for path in files if path.is_file()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone


def _processes_naming(text: str) -> list[int]:
    """Pids whose command line names ``text`` (the second stack's private folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _first_stack_view(first: Settings) -> tuple[set[str], bytes]:
    """The first emulator's CloudFormation stack names and its dev issuer's JWKS."""
    cfn = boto3.client("cloudformation", **first.aws_client_args())
    names = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
             if s["StackStatus"] != "DELETE_COMPLETE"}
    with urllib.request.urlopen(f"{first.endpoint_url}/meshgate-local-issuer/jwks.json",
                                timeout=10) as response:
        return names, bytes(response.read())


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def second_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondStack]:
    local_dir = tmp_path_factory.mktemp("second-stack")
    kafka_port, emulator_port = free_port(), free_port()
    env = {**os.environ,
           "MESHGATE_STACK_NAME": "meshgate-second",
           "MESHGATE_LOCAL_DIR": str(local_dir),
           "MESHGATE_TOOLS_DIR": str(Settings.resolve().local_dir),
           "MESHGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
           "MESHGATE_KAFKA_CONTROLLER_PORT": str(kafka_port + 1),
           "MESHGATE_ENDPOINT_URL": f"http://127.0.0.1:{emulator_port}",
           "MESHGATE_COLLECTOR_PORT": str(free_port()),
           "KAFKA_HEAP": "384m"}
    settings = Settings.resolve(env=env)
    started = time.monotonic()
    try:
        _meshgate(env, "up", "--no-demo")
        print(f"second stack up in {time.monotonic() - started:.1f}s")
        state = json.loads(_meshgate(env, "status", "--json"))
        yield SecondStack(env, settings, local_dir, str(state["endpoint"]))
    finally:
        pids = _pids(local_dir)
        stopping = time.monotonic()
        subprocess.run([*CLI, "down"], cwd=ROOT, env=env, timeout=STEP_TIMEOUT_S, check=False)
        print(f"second stack down in {time.monotonic() - stopping:.1f}s; "
              f"whole run {time.monotonic() - started:.1f}s")
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        strays = [pid for pid in _processes_naming(str(local_dir)) if _alive(pid)]
        assert not left, f"still running after 'meshgate down': {left}"
        assert not strays, f"processes naming {local_dir} still running: {strays}"


def test_a_second_stack_runs_beside_the_first_and_touches_nothing_of_it(
        second_stack: SecondStack) -> None:
    first, second = Settings.resolve(), second_stack.settings
    assert second.kafka_bootstrap != first.kafka_bootstrap
    first_names, first_jwks = _first_stack_view(first)
    first_spans = first.local_dir / "telemetry" / "spans.jsonl"
    assert first_spans.parent != second_stack.local_dir / "telemetry"

    # a marker topic on the second broker only
    marker = f"second-stack-marker-{secrets.token_hex(4)}"
    asyncio.run(topics.apply_topics(second.kafka_bootstrap,
                                    [topics.TopicSpec(name=marker, partitions=1)]))

    # a JWT from the second stack's issuer, through its HTTP endpoint, with a known trace id
    token = _meshgate(second_stack.env, "token", "--sub", "second-tester",
                      "--scope", "catalog:read").strip()
    trace_id = secrets.token_hex(16)
    request = urllib.request.Request(
        f"{second_stack.endpoint}/v1/products/SKU-1?quantity=2",
        headers={"authorization": f"Bearer {token}",
                 "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    deadline, last = time.monotonic() + CALL_WITHIN_S, ""
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, body = response.status, response.read()
                break
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
            if exc.code in (401, 403):
                break  # the token is refused: retrying will not help
        except OSError as exc:
            last = str(exc)
        time.sleep(1.0)
    assert status == 200, f"the call through the second stack failed: {last}"
    # its broker and its emulator's Lambda runtimes name its folder (so the fixture's "nothing
    # naming it is left after down" check has something to find; pidfiles cover the rest)
    assert len(_processes_naming(str(second_stack.local_dir))) >= 2
    # answered by the second stack's own workers, over its own broker
    assert json.loads(body)["data"]["stock"]["sku"] == "SKU-1"

    # its trace lands in ITS collector's file, not the first's
    second_spans = second_stack.local_dir / "telemetry" / "spans.jsonl"
    deadline = time.monotonic() + TRACE_WITHIN_S
    while time.monotonic() < deadline and not (
            second_spans.is_file() and trace_id in second_spans.read_text()):
        time.sleep(0.5)
    assert second_spans.is_file()
    assert trace_id in second_spans.read_text()
    assert not first_spans.is_file() or trace_id not in first_spans.read_text()

    # the first stack: no second CloudFormation stack, the same dev issuer keys, no marker
    names, jwks = _first_stack_view(first)
    assert second.stack_name not in names
    assert names >= first_names
    assert jwks == first_jwks
    assert marker in asyncio.run(_topics(second.kafka_bootstrap))
    assert marker not in asyncio.run(_topics(first.kafka_bootstrap))
