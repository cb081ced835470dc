"""Every port and address of the local stack is a setting (issue 12): the scripts, the
workers, the collector and the deployed gateway get this stack's, never a fixed one."""

from __future__ import annotations

import pytest

from bus.policy.model import Policy
from infra.keys.issuer_url import (
    EMULATOR_ORIGIN,
    IssuerUrlError,
    resolve_jwks_url,
    with_jwks_resolved,
)
from infra.local import workers as local
from infra.policy import load_policy
from infra.settings import ROOT, Settings
from infra.stack.otel_env import otel_environment

SECOND = {"MESHGATE_KAFKA_BOOTSTRAP": "127.0.0.1:19092", "MESHGATE_KAFKA_CONTROLLER_PORT": "19500",
          "MESHGATE_ENDPOINT_URL": "http://127.0.0.1:14566", "MESHGATE_COLLECTOR_PORT": "14318",
          "MESHGATE_LOCAL_DIR": "/tmp/second", "MESHGATE_STACK_NAME": "second"}


def test_defaults_are_the_usual_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", "/tmp/x")
    settings = Settings()
    assert settings.script_environment() == {
        "MESHGATE_LOCAL_DIR": "/tmp/x", "KAFKA_PORT": "9092", "KAFKA_CONTROLLER_PORT": "9093",
        "KAFKA_SECURE_PORT": "9094", "MINISTACK_PORT": "4566"}
    assert settings.otlp_endpoint == "http://127.0.0.1:4318"
    assert settings.build_dir == ROOT / "build"


def test_a_second_stack_gets_its_own_ports_folders_and_collector(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", SECOND["MESHGATE_LOCAL_DIR"])
    second = Settings.resolve(env=SECOND)
    assert second.script_environment() == {
        "MESHGATE_LOCAL_DIR": "/tmp/second", "KAFKA_PORT": "19092",
        "KAFKA_CONTROLLER_PORT": "19500", "KAFKA_SECURE_PORT": "19094", "MINISTACK_PORT": "14566"}
    assert second.build_dir == ROOT / "build" / "stacks" / "second"
    assert second.deps_dir == Settings().deps_dir  # content-keyed, shared
    env = local.worker_environment(second, local.WorkerSpec("orders", "functions.orders.worker"))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:14318"
    assert env["MESH_BOOTSTRAP_SERVERS"] == "127.0.0.1:19094"  # its broker's SASL_SSL listener
    assert env["MESH_KAFKA_SSL_CAFILE"] == "/tmp/second/kafka/tls/ca.pem"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:14566"
    assert otel_environment(second, "gateway")["OTEL_EXPORTER_OTLP_ENDPOINT"] == \
        "http://127.0.0.1:14318"


def test_the_started_processes_resolve_the_same_settings() -> None:
    second = Settings.resolve(env=SECOND, emulator_external=True)
    env = second.environment()
    assert Settings.resolve(env=env) == second
    assert env["MESHGATE_LOCAL_DIR"] == str(second.local_dir)  # the collector's folder
    aws = Settings.resolve(env={"MESHGATE_ENDPOINT_URL": "aws"})
    assert Settings.resolve(env=aws.environment()).endpoint_url is None


def test_the_dev_issuer_url_follows_the_emulator_in_force() -> None:
    url = f"{EMULATOR_ORIGIN}/meshgate-local-issuer/jwks.json"
    assert resolve_jwks_url(url, "http://127.0.0.1:14566/") == \
        "http://127.0.0.1:14566/meshgate-local-issuer/jwks.json"
    real = "https://login.example.com/.well-known/jwks.json"
    assert resolve_jwks_url(real, "http://127.0.0.1:14566") == real
    # a look-alike host is not the placeholder
    assert resolve_jwks_url(EMULATOR_ORIGIN + ".evil/jwks.json", "http://e") == \
        EMULATOR_ORIGIN + ".evil/jwks.json"
    with pytest.raises(IssuerUrlError):
        resolve_jwks_url(url, None)  # AWS: the policy must name a real issuer


def test_the_project_policy_deploys_with_the_emulators_jwks() -> None:
    policy: Policy = load_policy(ROOT / "policies")
    assert policy.edge is not None
    assert policy.edge.jwt is not None
    deployed = with_jwks_resolved(policy, "http://127.0.0.1:14566")
    assert deployed.edge is not None
    assert deployed.edge.jwt is not None
    assert deployed.edge.jwt.jwks_url == "http://127.0.0.1:14566/meshgate-local-issuer/jwks.json"
    assert deployed.routes == policy.routes
