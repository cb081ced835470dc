"""Find a service's handlers by its name, as the local workers do (``infra.local.workers``):
the ``Service`` named ``name`` in ``functions/<name>/service.py``; no list in code."""

from __future__ import annotations

import importlib
import re

from bus.service import Service
from functions.errors import ConfigError

NAME = re.compile(r"^[a-z][a-z0-9]*$")  # what ``meshgate new service`` writes: a package name


def service_module(name: str) -> str:
    return f"functions.{name}.service"


def find_service(name: str) -> Service:
    """The ``Service`` object of ``name``, or ``ConfigError`` naming what is missing."""
    if not NAME.fullmatch(name):
        raise ConfigError(f"service name {name!r} is no package name (letters and digits)")
    module_name = service_module(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"no handlers for service {name}: {module_name} not found") from exc
    found = [value for value in vars(module).values()
             if isinstance(value, Service) and value.name == name]
    if len(found) != 1:
        raise ConfigError(f"{module_name} defines {len(found)} Service({name!r}) objects, "
                          "not one")
    return found[0]
