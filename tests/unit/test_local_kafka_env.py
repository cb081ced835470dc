"""How the local mesh connects to the local broker (infra.local.kafka_env): each worker and the
gateway Lambda on SASL_SSL as its own SCRAM user, in the MESH_KAFKA_* names the bus reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.config import BusSettings
from infra.cli.main import _status_rows
from infra.keys import kafka_scram
from infra.keys.kafka_scram import password_of, secret_document
from infra.local import kafka_env, lifecycle
from infra.local import workers as local
from infra.settings import Settings
from infra.stack.deploy_settings import DeploySettings
from infra.stack.kafka_access import client_environment, role_statements


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path / "local"))
    return Settings.resolve(env={})


def test_a_worker_connects_as_itself_on_the_sasl_ssl_listener(settings: Settings) -> None:
    env = local.worker_environment(settings, local.WorkerSpec("orders", "functions.orders.worker"))
    bus = BusSettings.resolve(env=env)  # the names are the ones the bus reads
    assert bus.bootstrap_servers == "127.0.0.1:9094"
    assert bus.kafka.protocol == "SASL_SSL"
    assert bus.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert bus.kafka.sasl_username == "orders"
    assert bus.kafka.sasl_password is None  # never in the environment: read from the secret
    assert bus.kafka.sasl_password_secret == "/meshgate/kafka/scram/orders"
    assert bus.kafka.ssl_cafile == str(settings.local_dir / "kafka" / "tls" / "ca.pem")
    assert bus.kafka.ssl_check_hostname  # the broker's certificate names 127.0.0.1


def test_plaintext_keeps_the_old_mesh(settings: Settings) -> None:
    plain = settings.model_copy(update={"local_mesh_protocol": "PLAINTEXT"})
    assert kafka_env.client_environment(plain, "orders") == {
        "MESH_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    assert kafka_env.lambda_environment(plain, "gateway") == {}


def test_a_lambda_on_the_emulator_gets_the_ca_inline(settings: Settings) -> None:
    ca = kafka_env.ca_file(settings)
    assert "MESH_KAFKA_SSL_CAFILE" in kafka_env.lambda_environment(settings, "gateway")
    ca.parent.mkdir(parents=True)
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    env = kafka_env.lambda_environment(settings, "gateway")
    assert env["MESH_KAFKA_SSL_CA_PEM"] == ca.read_text()
    assert "MESH_KAFKA_SSL_CAFILE" not in env
    bus = BusSettings.resolve(env={**env, "MESH_SERVICE_NAME": "gateway"})
    assert bus.kafka.sasl_username == "gateway"
    assert bus.bootstrap_servers == settings.secure_bootstrap


def test_the_deploy_gives_every_function_its_own_user_on_the_local_broker_only(
        settings: Settings) -> None:
    deploy = DeploySettings()
    env = client_environment(deploy, settings, "inventory")
    assert env["MESH_KAFKA_SASL_USERNAME"] == "inventory"
    assert env["MESH_BOOTSTRAP_SERVERS"] == "127.0.0.1:9094"
    [statement] = role_statements(deploy, settings, "inventory", consume=[], produce=[],
                                  groups=[])
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"]["Fn::Sub"].endswith(":secret:/meshgate/kafka/scram/inventory-*")
    # real AWS, or a broker that is not this machine's: the deploy settings decide, not us
    for other in (settings.model_copy(update={"endpoint_url": None}),
                  settings.model_copy(update={"kafka_bootstrap": "broker:29092"})):
        assert client_environment(deploy, other, "inventory") == {}
        assert role_statements(deploy, other, "inventory", consume=[], produce=[],
                               groups=[]) == []
    # SCRAM asked for explicitly: the deploy settings' own variables, not two sets
    scram = client_environment(DeploySettings(scram=True), settings, "inventory")
    assert "MESH_KAFKA_SSL_CAFILE" not in scram


def test_the_stored_secret_is_msk_form_and_the_bare_password_reads_too() -> None:
    document = secret_document("orders", "s3cret")
    assert json.loads(document) == {"username": "orders", "password": "s3cret"}
    assert password_of(document) == "s3cret"
    assert password_of("s3cret\n") == "s3cret"
    assert password_of('{"username": "orders"}') is None
    assert password_of("{not json") is None
    assert password_of("") is None


def test_every_service_and_worker_gets_a_user(settings: Settings) -> None:
    principals = local.kafka_principals(settings)
    assert {"gateway", "orders", "inventory", "meshgate-operator"} <= set(principals)
    assert "collector" not in principals


def test_status_shows_both_listeners(settings: Settings) -> None:
    listeners = lifecycle.listeners(settings)
    assert listeners == {"PLAINTEXT": "127.0.0.1:9092", "SASL_SSL": "127.0.0.1:9094",
                         "SSL": "127.0.0.1:9095"}
    rows = _status_rows({"endpoint": None, "authorized_endpoint": None,
                         "kafka": {"bootstrap": "127.0.0.1:9092", "running": True,
                                   "listeners": listeners, "mesh": "SASL_SSL"},
                         "emulator": {"url": "http://127.0.0.1:4566", "running": True},
                         "workers": {}})
    assert rows[:3] == [("kafka", "running", "127.0.0.1:9092"),
                        ("kafka SASL_SSL", "running", "127.0.0.1:9094 (the mesh)"),
                        ("kafka SSL", "running", "127.0.0.1:9095")]


def test_a_second_stack_derives_its_secure_port(settings: Settings) -> None:
    second = Settings.resolve(env={"MESHGATE_KAFKA_BOOTSTRAP": "127.0.0.1:19092"})
    assert second.secure_bootstrap == "127.0.0.1:19094"
    assert second.script_environment()["KAFKA_SECURE_PORT"] == "19094"
    moved = Settings.resolve(env={"MESHGATE_KAFKA_SECURE_BOOTSTRAP": "127.0.0.1:29999"})
    assert moved.script_environment()["KAFKA_SECURE_PORT"] == "29999"


def test_stored_principals_are_the_password_files_but_the_brokers_admin(
        settings: Settings) -> None:
    folder = kafka_scram.secrets_dir(settings)
    assert kafka_scram.stored_principals(settings) == set()  # no folder yet
    for name in ("orders", "gone", "admin", "orders.tmp"):
        kafka_scram.write_private(folder / name, "x")
    assert kafka_scram.stored_principals(settings) == {"orders", "gone"}
