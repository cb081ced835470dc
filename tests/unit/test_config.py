"""bus.config: explicit argument over MESH_* environment over default, validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bus.config import BusSettings


def test_defaults_with_empty_environment() -> None:
    settings = BusSettings.resolve(env={})
    assert settings == BusSettings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.service_name == "anonymous"
    assert settings.reply_topic == "mesh.replies"
    assert settings.reply_partition is None
    assert settings.request_timeout_s == 10.0


def test_environment_over_default_with_coercion() -> None:
    settings = BusSettings.resolve(
        env={
            "MESH_BOOTSTRAP_SERVERS": "kafka:9093",
            "MESH_SERVICE_NAME": "gateway",
            "MESH_REPLY_PARTITION": "3",
            "MESH_REQUEST_TIMEOUT_S": "2.5",
            "MESH_LINGER_MS": "5",
            "UNRELATED": "x",
        }
    )
    assert settings.bootstrap_servers == "kafka:9093"
    assert settings.service_name == "gateway"
    assert settings.reply_partition == 3
    assert settings.request_timeout_s == 2.5
    assert settings.linger_ms == 5


def test_explicit_over_environment() -> None:
    env = {"MESH_SERVICE_NAME": "from-env", "MESH_REQUEST_TIMEOUT_S": "2"}
    settings = BusSettings.resolve(env=env, service_name="explicit", request_timeout_s=4.0)
    assert settings.service_name == "explicit"
    assert settings.request_timeout_s == 4.0


def test_explicit_none_falls_back_to_environment() -> None:
    settings = BusSettings.resolve(env={"MESH_SERVICE_NAME": "from-env"}, service_name=None)
    assert settings.service_name == "from-env"


def test_empty_environment_value_is_ignored() -> None:
    settings = BusSettings.resolve(env={"MESH_SERVICE_NAME": "", "MESH_REPLY_PARTITION": ""})
    assert settings.service_name == "anonymous"
    assert settings.reply_partition is None


def test_reads_os_environ_when_no_env_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_SERVICE_NAME", "os-env")
    assert BusSettings.resolve().service_name == "os-env"
    assert BusSettings.resolve(env={}).service_name == "anonymous"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MESH_REQUEST_TIMEOUT_S", "0"),
        ("MESH_REQUEST_TIMEOUT_S", "901"),
        ("MESH_REQUEST_TIMEOUT_S", "soon"),
        ("MESH_REPLY_PARTITION", "-1"),
        ("MESH_REPLY_PARTITION", "two"),
        ("MESH_LINGER_MS", "-5"),
        ("MESH_FETCH_MAX_WAIT_MS", "-1"),
        ("MESH_MAX_MESSAGE_BYTES", "0"),
    ],
)
def test_bad_environment_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        BusSettings.resolve(env={name: value})


@pytest.mark.parametrize(
    "explicit",
    [{"service_name": ""}, {"request_timeout_s": -1.0}, {"reply_partition": -3}, {"nope": 1}],
)
def test_bad_explicit_values_are_refused(explicit: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BusSettings.resolve(env={}, **explicit)


def test_settings_are_frozen() -> None:
    settings = BusSettings.resolve(env={})
    with pytest.raises(ValidationError):
        settings.service_name = "other"
