"""Shared fixtures. Unit tests need nothing running; integration and e2e tests use the real
broker and emulator, which ``make test`` (``meshgate up``) starts before pytest runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

PYTHONS_THRESHOLD = gc.get_threshold()  # before any test module imports a handler


@pytest.fixture(autouse=True)
def _collector_as_python_sets_it() -> Iterator[None]:
    """A Lambda handler module imported into this process settles the collector for serving
    (``functions.shared.init_gc``: its objects frozen, a larger young generation); after each
    test the test process goes back to Python's own, so no test depends on which one ran a
    handler's import first."""
    yield
    if gc.get_threshold() != PYTHONS_THRESHOLD or gc.get_freeze_count():
        gc.unfreeze()
        gc.set_threshold(*PYTHONS_THRESHOLD)
