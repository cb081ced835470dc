"""The broker script, on a second broker with its own ports and data, beside the main one."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from proof.procs import free_port
from tests.support import KAFKA_SCRIPT, pid_alive, port_open, run

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {"KAFKA_PORT": str(port), "KAFKA_STATE_DIR": str(tmp_path / "kafka"),
           "KAFKA_HEAP": "512m"}
    yield env
    run(["bash", str(KAFKA_SCRIPT), "stop"], env)


def test_start_twice_is_harmless_and_stop_cleans_up(broker_env: dict[str, str]) -> None:
    port = int(broker_env["KAFKA_PORT"])
    first = run(["bash", str(KAFKA_SCRIPT), "start"], broker_env)
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    assert "formatted" in first.stdout
    pid = int(Path(broker_env["KAFKA_STATE_DIR"], "kafka.pid").read_text())
    assert pid_alive(pid)
    assert port_open(port)

    second = run(["bash", str(KAFKA_SCRIPT), "start"], broker_env)
    assert second.returncode == 0, second.stderr
    assert f"already running (pid {pid}" in second.stdout

    assert run(["bash", str(KAFKA_SCRIPT), "status"], broker_env).returncode == 0

    stopped = run(["bash", str(KAFKA_SCRIPT), "stop"], broker_env)
    assert stopped.returncode == 0
    assert not pid_alive(pid)
    assert not port_open(port)
    assert not Path(broker_env["KAFKA_STATE_DIR"], "kafka.pid").exists()
    assert run(["bash", str(KAFKA_SCRIPT), "status"], broker_env).returncode == 3

    # A restart keeps the formatted log directory: no second format.
    again = run(["bash", str(KAFKA_SCRIPT), "start"], broker_env)
    assert again.returncode == 0, again.stderr
    assert "formatted" not in again.stdout


def test_port_in_use_is_one_clear_error(broker_env: dict[str, str]) -> None:
    port = int(broker_env["KAFKA_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run(["bash", str(KAFKA_SCRIPT), "start"], broker_env)
    assert result.returncode != 0
    assert f"kafka: error: port {port} (Kafka listener) is already in use" in result.stderr
    assert not Path(broker_env["KAFKA_STATE_DIR"], "kafka.pid").exists()


def test_missing_jdk_is_one_clear_error(broker_env: dict[str, str]) -> None:
    result = run(["bash", str(KAFKA_SCRIPT), "start"], {**broker_env, "JAVA": "/nonexistent/java"})
    assert result.returncode != 0
    assert "kafka: error: no Java found" in result.stderr
    assert not port_open(int(broker_env["KAFKA_PORT"]))


def test_broker_that_does_not_come_up_is_stopped(broker_env: dict[str, str]) -> None:
    # A heap far too small makes the JVM exit during start-up.
    result = run(["bash", str(KAFKA_SCRIPT), "start"], {**broker_env, "KAFKA_HEAP": "2m"})
    assert result.returncode != 0
    assert "kafka: error: the process exited during start-up" in result.stderr
    pidfile = Path(broker_env["KAFKA_STATE_DIR"], "kafka.pid")
    assert not pidfile.exists() or not pid_alive(int(pidfile.read_text()))
