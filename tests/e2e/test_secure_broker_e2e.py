"""The demo path over SASL_SSL (issue 13): HTTP -> emulated API Gateway -> gateway Lambda ->
Kafka -> orders worker -> reply, where the gateway Lambda and the orders worker each reach
Kafka only through the broker's SASL_SSL listener as their own SCRAM user. Proved from the
processes' own sockets: on the plaintext mesh they would be connected to the PLAINTEXT port."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from infra.local import workers as local
from infra.settings import Settings

pytestmark = pytest.mark.e2e
TCP_ESTABLISHED = "01"


def _remote_ports(pid: int) -> set[int]:
    """The remote loopback ports of ``pid``'s established TCP connections (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == TCP_ESTABLISHED:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if b"=" in item)
    return {name: value for name, _, value in pairs}


def _gateway_lambda_pids(settings: Settings) -> list[int]:
    """The emulator's processes running this stack's gateway function."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = _environment(int(proc.name))
        except OSError:
            continue
        if env.get("AWS_LAMBDA_FUNCTION_NAME", "").startswith(
                f"{settings.stack_name}-GatewayFunction-"):
            pids.append(int(proc.name))
    return pids


def test_the_demo_call_goes_over_sasl_ssl_end_to_end(endpoint: str, settings: Settings) -> None:
    order = {"customer": "sasl", "lines": [{"sku": "s", "quantity": 2, "unit_price": "1.25"}]}
    response = httpx.post(f"{endpoint}/v1/orders", json=order, timeout=30)
    assert response.status_code == 201, response.text
    assert response.json()["handled_by"] == "orders"
    assert Decimal(response.json()["total"]) == Decimal("2.50")

    secure = int(settings.secure_bootstrap.rsplit(":", 1)[1])
    plaintext = settings.kafka_port
    [orders] = [spec for spec in local.workers(settings) if spec.name == "orders"]
    worker = local.worker_pid(settings, orders)
    assert worker is not None, "the orders worker is not running"
    lambdas = _gateway_lambda_pids(settings)
    assert lambdas, "no gateway Lambda process: the call above should have started one"
    for pid, user in [(worker, "orders"), *((p, "gateway") for p in lambdas)]:
        env = _environment(pid)
        assert env["MESH_KAFKA_PROTOCOL"] == "SASL_SSL"
        assert env["MESH_KAFKA_SASL_USERNAME"] == user
        assert "MESH_KAFKA_SASL_PASSWORD" not in env  # read from Secrets Manager, never here
        assert plaintext not in _remote_ports(pid), f"{user} (pid {pid}) talks PLAINTEXT"
    assert secure in _remote_ports(worker)
    # the emulator keeps several warm instances; one served the call (each connects to
    # Kafka on its first mesh call)
    connected = [pid for pid in lambdas if secure in _remote_ports(pid)]
    assert connected, f"no gateway Lambda process is connected to {secure}"
