"""Interop fixtures: the real broker (started by ``make test`` / ``meshgate up``) and the Java
verifier, compiled once per content hash (``tests.interop.java_build``)."""

from __future__ import annotations

import pytest

from infra.settings import Settings
from tests.interop.java_build import JavaBuildError, JavaProgram, for_settings
from tests.support import running_broker


@pytest.fixture(scope="session")
def infra_settings() -> Settings:
    return Settings.resolve()


@pytest.fixture(scope="session")
def bootstrap(infra_settings: Settings) -> str:
    return running_broker(infra_settings)


@pytest.fixture(scope="session")
def java(infra_settings: Settings) -> JavaProgram:
    """The verifier; a missing JDK or a compile error fails the test (never a skip)."""
    try:
        return for_settings(infra_settings)
    except JavaBuildError as exc:
        pytest.fail(str(exc))
