"""The one Lambda handler every service's function runs (``functions.kafka_service``): it
finds the service's handlers by name, as the local workers do, and refuses an unreadable event
before looking anything up."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

from bus.service import Service
from functions.errors import ConfigError
from functions.kafka_service import handler as generic
from functions.kafka_service.discovery import find_service
from infra.stack.functions import SERVICE_EVENTS


@pytest.mark.parametrize("name", ["orders", "inventory"])
def test_a_service_is_found_by_its_name(name: str) -> None:
    found = find_service(name)
    assert isinstance(found, Service)
    assert found.name == name
    # the very object its worker serves (functions/<name>/service.py)
    assert found is getattr(importlib.import_module(f"functions.{name}.service"), name)


@pytest.mark.parametrize(("name", "reason"), [
    ("nosuchservice", "not found"), ("../orders", "no package name"), ("Orders", "no package"),
    ("emptysvc", "defines 0"), ("twosvc", "defines 2"),
])
def test_a_name_without_handlers_is_a_config_error(monkeypatch: pytest.MonkeyPatch, name: str,
                                                   reason: str) -> None:
    empty = types.ModuleType("functions.emptysvc.service")
    two = types.ModuleType("functions.twosvc.service")
    two.a, two.b = Service("twosvc"), Service("twosvc")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, empty.__name__, empty)
    monkeypatch.setitem(sys.modules, two.__name__, two)
    with pytest.raises(ConfigError, match=reason):
        find_service(name)


def test_the_deployed_handler_is_this_module() -> None:
    module, _, function = SERVICE_EVENTS.handler.rpartition(".")
    assert module == generic.__name__
    assert getattr(generic, function) is generic.handler


@pytest.mark.parametrize("event", [None, {}, [1], {"eventSource": "SelfManagedKafka",
                                                   "bootstrapServers": "b:9092", "records": 3}])
def test_an_unreadable_event_is_refused_without_a_service(monkeypatch: pytest.MonkeyPatch,
                                                          event: object) -> None:
    monkeypatch.delenv(generic.SERVICE_ENV, raising=False)
    monkeypatch.setattr(generic, "_INSTANCE", None)
    answer = generic.handler(event, None)
    assert answer["statusCode"] == 400
    assert answer["error"] == "malformed_kafka_event"
    assert generic._INSTANCE is None


def test_a_function_without_its_service_name_fails_loudly(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv(generic.SERVICE_ENV, raising=False)
    monkeypatch.setattr(generic, "_INSTANCE", None)
    with pytest.raises(ConfigError, match=generic.SERVICE_ENV):
        generic.instance()
