"""A worker process (``functions.shared.worker_main.serve``, on the real broker) starts serving
with what its start made frozen and the serving collector threshold (functions.shared.init_gc):
a fresh interpreter runs ``serve`` with ``ServiceWorker.run`` replaced by a probe of the
collector's state at the moment serving would begin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from functions.shared.init_gc import SERVING_THRESHOLD
from tests.support import run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import asyncio, gc, json, sys
from bus.config import BusSettings
from bus.runtime.worker import ServiceWorker
from bus.service import Service
from functions.shared import init_gc, worker_main

seen = {}

async def probe(self, stop):
    seen.update(frozen=gc.get_freeze_count(), threshold=list(gc.get_threshold()),
                enabled=gc.isenabled())

ServiceWorker.run = probe
if sys.argv[3] == "without":
    init_gc.settle_for_serving = lambda: None
settings = BusSettings.resolve(service_name=sys.argv[1], bootstrap_servers=sys.argv[2],
                               insecure=True)
asyncio.run(worker_main.serve(Service(sys.argv[1]), settings))
print(json.dumps(seen))
"""


def probe(service_name: str, bootstrap: str, settle: str) -> dict[str, object]:
    done = run([sys.executable, "-c", PROBE, service_name, bootstrap, settle],
               env={"PYTHONPATH": str(ROOT)}, timeout_s=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_worker_serves_with_its_start_frozen(service_name: str, bootstrap: str) -> None:
    result = probe(service_name, bootstrap, "with")
    assert result["enabled"] is True
    frozen = result["frozen"]
    assert isinstance(frozen, int)
    assert frozen > 10_000
    assert result["threshold"] == list(SERVING_THRESHOLD)


def test_the_probe_tells_a_worker_that_does_not(service_name: str, bootstrap: str) -> None:
    result = probe(service_name, bootstrap, "without")
    assert result["frozen"] == 0
    assert result["threshold"] != list(SERVING_THRESHOLD)
