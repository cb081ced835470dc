"""The emulator script, on a second emulator with its own port and state, beside the main one."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from proof.procs import free_port
from tests.support import EMULATOR_SCRIPT, MESHGATE, pid_alive, port_open, run

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"MINISTACK_PORT": str(free_port()), "MINISTACK_STATE_DIR": str(tmp_path / "ms")}
    yield env
    run(["bash", str(EMULATOR_SCRIPT), "stop"], env)


def test_start_twice_is_harmless_and_stop_cleans_up(emulator_env: dict[str, str]) -> None:
    port = int(emulator_env["MINISTACK_PORT"])
    first = run(["bash", str(EMULATOR_SCRIPT), "start"], emulator_env)
    assert first.returncode == 0, first.stderr
    pid = int(Path(emulator_env["MINISTACK_STATE_DIR"], "ministack.pid").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ministack/health", timeout=5) as r:
        assert json.load(r)["services"]["lambda"] == "available"

    second = run(["bash", str(EMULATOR_SCRIPT), "start"], emulator_env)
    assert second.returncode == 0
    assert f"already running (pid {pid}" in second.stdout

    stopped = run(["bash", str(EMULATOR_SCRIPT), "stop"], emulator_env)
    assert stopped.returncode == 0
    assert not pid_alive(pid)
    assert not port_open(port)
    assert run(["bash", str(EMULATOR_SCRIPT), "status"], emulator_env).returncode == 3


def test_port_in_use_is_one_clear_error(emulator_env: dict[str, str]) -> None:
    port = int(emulator_env["MINISTACK_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run(["bash", str(EMULATOR_SCRIPT), "start"], emulator_env)
    assert result.returncode != 0
    assert f"emulator: error: port {port} (AWS emulator) is already in use" in result.stderr


def test_deploy_to_an_emulator_that_does_not_answer_fails_clearly() -> None:
    closed = free_port()
    result = run([str(MESHGATE), "deploy"],
                 {"MESHGATE_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}, timeout_s=600)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meshgate: error: ")
    assert f"the AWS endpoint http://127.0.0.1:{closed} does not answer" in lines[0]
    assert "make up" in lines[0]
