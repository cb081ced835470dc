"""``meshgate docs`` writes documents valid against the official OpenAPI 3.1 and AsyncAPI
3.0.0 schemas that describe every route and every topic; ``status``, ``keys list`` and
``dlq list`` print tables: aligned plain columns through a pipe, rich tables on a terminal
(run here under a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import httpx
import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from infra.policy import load_policy
from tests.support import MESHGATE, ROOT, run

pytestmark = pytest.mark.e2e
ASYNCAPI = jsonschema_rs.validator_for(
    json.loads((ROOT / "schemas" / "asyncapi-3.0.0.json").read_text()))


def run_on_terminal(args: list[str], timeout_s: float = 60) -> tuple[int, str]:
    """``meshgate ARGS`` with stdout on a pseudo-terminal 160 columns wide."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(MESHGATE), *args], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = b"".join(chunks).decode("utf-8", "replace")
    return code, re.sub(r"\x1b\[[0-9;]*m", "", text)  # styles off: the text and the box


def test_docs_writes_valid_documents_with_every_route_and_topic(tmp_path: Path,
                                                                endpoint: str) -> None:
    result = run([str(MESHGATE), "docs", "--out", str(tmp_path / "api")])
    assert result.returncode == 0, result.stderr
    assert "openapi.json (OpenAPI 3.1.0" in result.stdout
    assert "asyncapi.json (AsyncAPI 3.0.0" in result.stdout
    openapi = json.loads((tmp_path / "api" / "openapi.json").read_text())
    asyncapi = json.loads((tmp_path / "api" / "asyncapi.json").read_text())
    assert [e.message for e in OPENAPI_31_VALIDATOR.iter_errors(openapi)] == []
    assert [e.message for e in ASYNCAPI.iter_errors(asyncapi)] == []
    policy = load_policy(ROOT / "policies")
    described = {(m.upper(), p) for p, item in openapi["paths"].items() for m in item}
    assert {(r.method, r.path) for r in policy.routes} <= described
    assert {c["address"] for c in asyncapi["channels"].values()} == set(policy.topics)
    assert asyncapi["servers"]["local"]["host"] == "127.0.0.1:9092"
    # The same document the deployed edge serves.
    served = httpx.get(f"{endpoint}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json()["paths"].keys() == openapi["paths"].keys()


def test_docs_refuses_an_unwritable_folder_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run([str(MESHGATE), "docs", "--out", str(blocker / "api")])
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("meshgate: error: docs: cannot write to ")
    assert line.endswith("pass a writable folder with --out")


def test_status_is_a_table(endpoint: str) -> None:
    plain = run([str(MESHGATE), "status"])
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["WHAT", "STATE", "WHERE"]
    assert any(line.split() == ["kafka", "running", "127.0.0.1:9092"] for line in lines)
    assert any(line.split()[:2] == ["endpoint", "deployed"] and endpoint in line
               for line in lines)
    assert any(line.startswith("worker orders ") and "running" in line for line in lines)
    code, shown = run_on_terminal(["status"])
    assert code == 0, shown
    assert "meshgate status" in shown
    assert "┃ WHAT" in shown
    assert "│ kafka" in shown
    assert endpoint in shown


def test_keys_list_is_a_table(endpoint: str) -> None:
    plain = run([str(MESHGATE), "keys", "list"])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[0].split() == ["KEY", "ID", "OWNER", "STATE", "RATE/S",
                                                    "BURST", "DAILY", "QUOTA"]
    assert plain.stdout.splitlines()[-1].endswith(" key(s)")
    code, shown = run_on_terminal(["keys", "list"])
    assert code == 0, shown
    assert "API keys" in shown
    assert "┃ KEY ID" in shown


def test_dlq_list_is_a_table(endpoint: str) -> None:
    plain = run([str(MESHGATE), "dlq", "list", "mesh.quarantine", "--limit", "3"])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[0].split()[:3] == ["PART@OFFSET", "ID", "TYPE"]
    assert "dead letter(s) on mesh.quarantine" in plain.stdout
    code, shown = run_on_terminal(["dlq", "list", "mesh.quarantine", "--limit", "3"])
    assert code == 0, shown
    assert "dead letters on mesh.quarantine" in shown
    assert "┃ PART@OFFSET" in shown
