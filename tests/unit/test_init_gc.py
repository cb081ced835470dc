"""functions.shared.init_gc in the deployed handlers: a fresh interpreter importing a handler
module (as a Lambda cold start does) pauses the collector once, before any heavy import, and
ends with the collector on, the init's objects frozen and the serving threshold set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.zip_cold_start import HANDLER_ENV  # configured as a deployment does
from functions.shared.init_gc import SERVING_THRESHOLD
from infra.deploy.pipeline import bundle_policy_to
from infra.settings import Settings
from infra.stack.functions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import gc, json, sys
HEAVY = ("fastapi", "pydantic", "botocore", "cryptography", "aiokafka")
pauses = []
real_disable = gc.disable
def disable():
    pauses.append([name for name in HEAVY if name in sys.modules])
    real_disable()
gc.disable = disable
import {module}
print(json.dumps({{"paused": pauses == [[]],
                  "loaded": sorted(name for name in HEAVY if name in sys.modules),
                  "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold()}}))
"""
# The baseline Lambda of the HTTP benchmark stays a plain handler.
HANDLERS = [spec.handler.rsplit(".", 1)[0] for spec in FUNCTIONS if spec.name != "bench-echo"]


def probe(module: str, tmp_path: Path) -> dict[str, object]:
    policy = bundle_policy_to(Settings.resolve(), tmp_path / "policy.json")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           **HANDLER_ENV, "MESH_POLICY_FILE": str(policy)}
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_deployed_handler_but_the_baseline_is_covered() -> None:
    assert sorted(HANDLERS) == ["functions.authorizer.handler", "functions.gateway.handler",
                                "functions.kafka_service.handler"]


@pytest.mark.parametrize("module", HANDLERS)
def test_a_cold_import_pauses_before_the_heavy_imports_and_freezes_them(
        module: str, tmp_path: Path) -> None:
    result = probe(module, tmp_path)
    assert result["paused"] is True  # paused, with none of them loaded yet
    loaded = result["loaded"]
    assert isinstance(loaded, list)
    assert "pydantic" in loaded  # which the pause was for
    assert result["enabled"] is True
    frozen = result["frozen"]
    assert isinstance(frozen, int)
    assert frozen > 10_000  # what the init made is out of every later collection's walk
    assert result["threshold"] == list(SERVING_THRESHOLD)


def test_the_probe_sees_an_import_that_does_not_pause(tmp_path: Path) -> None:
    """The counterfactual: the same probe on a module that leaves the collector alone."""
    result = probe("functions.gateway.wiring", tmp_path)
    assert result["paused"] is False
    assert result["frozen"] == 0
    assert result["threshold"] != list(SERVING_THRESHOLD)
