"""Interop fixtures: the real broker (started by ``make test`` / ``meshgate up``) and the Java
verifier, compiled once per content hash (``tests.interop.java_build``)."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from localstack.kafka.probe import broker_ready
from tests.interop.java_build import JavaBuildError, JavaProgram, for_settings


@pytest.fixture(scope="session")
def infra_settings() -> Settings:
    return Settings.resolve()


@pytest.fixture(scope="session")
def bootstrap(infra_settings: Settings) -> str:
    host, _, port = infra_settings.kafka_bootstrap.rpartition(":")
    if not broker_ready(host, int(port)):
        pytest.fail(f"no Kafka broker at {infra_settings.kafka_bootstrap}: run 'make test' "
                    "or '.venv/bin/meshgate up' first")
    return infra_settings.kafka_bootstrap


@pytest.fixture(scope="session")
def java(infra_settings: Settings) -> JavaProgram:
    """The verifier; a missing JDK or a compile error fails the test (never a skip)."""
    try:
        return for_settings(infra_settings)
    except JavaBuildError as exc:
        pytest.fail(str(exc))
