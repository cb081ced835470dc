"""Helpers shared by the integration and e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bus.delivery.retry import RetryBudget
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519, signing_key_from_bytes
from bus.telemetry.mesh_telemetry import MeshTelemetry
from bus.transport import Record
from infra.settings import Settings
from localstack.kafka.probe import broker_ready
from proof import tables

if TYPE_CHECKING:
    from bus.security.inbound import InboundGuard
    from proof.attack.mesh_cases import MeshCase

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "localstack" / "kafka" / "kafka.sh"
EMULATOR_SCRIPT = ROOT / "localstack" / "ministack" / "ministack.sh"
MESHGATE = ROOT / ".venv" / "bin" / "meshgate"


def aws_environment(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str],
                    home: str = "/nonexistent") -> None:
    """This process's ``AWS_*`` variables replaced by ``env``, and a ``HOME`` without a
    shared AWS config file (so botocore and ``direct_route`` see only ``env``)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", home)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(
    command: list[str], env: Mapping[str, str] | None = None, timeout_s: float = 300.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def identities(produce: dict[str, list[str]],
               replay: dict[str, list[str]] | None = None,
               edges: tuple[str, ...] = ("gateway",),
               pair_mac: tuple[str, ...] = ()) -> dict[str, Identity]:
    """A fresh Ed25519 key per service (and per operator of ``replay``), one shared keyring,
    and the given access map; ``edges`` may name principals (as the project's gateway);
    ``pair_mac`` accept per-pair MACs (bus.security.pair_mac)."""
    keys = {name: generate_ed25519(name) for name in [*produce, *(replay or {})]}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce, None, replay, edges=edges, pair_mac=pair_mac)
    return {service: Identity(service, signing, keyring, access)
            for service, (signing, _) in keys.items()}


class Telemetry:
    """SDK tracer and meter providers that keep what they record, for assertions."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.tracer = tracer
        self.meter = MeterProvider(metric_readers=[self.metrics])

    def for_service(self, name: str) -> MeshTelemetry:
        return MeshTelemetry(name, tracer_provider=self.tracer, meter_provider=self.meter)

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [point for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == metric for point in m.data.data_points]


@contextmanager
def scratch_table(dynamodb: Any, prefix: str, resource: Mapping[str, Any], *,
                  ttl: bool = True, wait_s: int = 60) -> Iterator[str]:
    """A fresh table ``itest-<prefix>-<random>`` made from a CloudFormation table resource,
    with the resource's TTL turned on unless ``ttl`` is false; deleted afterwards."""
    with tables.scratch_table(dynamodb, f"itest-{prefix}", resource, ttl=ttl,
                              wait_s=wait_s) as name:
        yield name


class CountingBudget(RetryBudget):
    """A roomy retry budget that counts what a client asks of it: every retry spends one
    unit before its backoff sleep, so ``spent`` is the retries (and sleeps) made."""

    def __init__(self) -> None:
        super().__init__(ratio=0.0, min_retries_per_s=1000.0, window_s=10.0)
        self.requests = 0
        self.spent = 0

    def record_request(self, now_s: float) -> None:
        self.requests += 1
        super().record_request(now_s)

    def try_spend(self, now_s: float) -> bool:
        granted = super().try_spend(now_s)
        self.spent += granted
        return granted


def sender_identity(settings: Settings, service: str) -> Identity:
    """A deployed service's signing identity (its key from Secrets Manager): tests use it to
    send genuine messages as that service. The tools never do (``meshgate dlq replay``
    countersigns as an operator instead)."""
    from infra.deploy import aws as deploy
    from infra.keys import identity
    from infra.policy import access_map

    secrets = deploy.client(settings, "secretsmanager")
    raw = secrets.get_secret_value(SecretId=identity.secret_name(settings, service))
    key = signing_key_from_bytes(bytes(raw["SecretBinary"]))
    access = access_map(settings.root / "policies")
    return Identity(service, key, None, AccessPolicy.from_dict(access["produce"],
                                                              access["consume"]))


def running_broker(settings: Settings) -> str:
    """The stack's broker address; the test fails (never skips) when no broker answers there."""


    host, _, port = settings.kafka_bootstrap.rpartition(":")
    if not broker_ready(host, int(port)):
        pytest.fail(f"no Kafka broker at {settings.kafka_bootstrap}: run 'make test' "
                    "or '.venv/bin/meshgate up' first")
    return settings.kafka_bootstrap


def admission_verdicts(guard: InboundGuard, topic: str, cases: Iterable[MeshCase],
                       now_ms: int) -> dict[str, str]:
    """Each attack case's label -> ``admitted`` or the code ``guard`` refuses it with, judged
    by admission alone (no broker), the cases read in order as offsets 0, 1, ..."""
    verdicts: dict[str, str] = {}
    for offset, case in enumerate(cases):
        record = Record(topic, 0, offset, case.value,
                        headers=cast(Sequence[tuple[str, bytes]], case.headers))
        try:
            guard.admit(record, now_ms)
        except MeshError as exc:
            verdicts[case.label] = exc.code
        else:
            verdicts[case.label] = "admitted"
    return verdicts
