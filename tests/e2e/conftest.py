"""e2e fixtures: the deployed stack, brought up by ``meshgate up`` when anything is missing."""

from __future__ import annotations

import json

import pytest

from infra.local import lifecycle
from infra.settings import Settings
from tests.support import MESHGATE, run


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.resolve()


@pytest.fixture(scope="session")
def endpoint(settings: Settings) -> str:
    state = lifecycle.status(settings)
    if state["endpoint"] is None or None in state["workers"].values():
        result = run([str(MESHGATE), "up", "--no-demo"], timeout_s=900)
        assert result.returncode == 0, result.stdout + result.stderr
        state = json.loads(run([str(MESHGATE), "status", "--json"]).stdout)
    endpoint = state["endpoint"]
    assert isinstance(endpoint, str)
    return endpoint
