"""A route's JSON Schemas as compiled checks, each compiled once: at deploy where possible.

fastjsonschema turns a schema into Python source and ``exec``s it: 1-2.5 ms a schema at
every cold start (4.4 ms for the demo's routes). The deploy does that work once instead
(``infra.deploy.validators``): it writes each schema's generated source into the gateway's
zip as a module of :data:`PACKAGE`, which the zip's bytecode step compiles, so a cold start
imports a ``.pyc``. A module is used only if it was generated from the same canonical schema
text by the same fastjsonschema version; otherwise (a tree without the package, a stale
zip) the schema is compiled here as before.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema

from bus.policy.model import Route

Check = Callable[[Any], Any]
PACKAGE = "meshgate_validators"  # at the zip's root, beside the bundled policy

# Compiled checks by canonical schema text: routes sharing a schema (an order's body on the
# public and the partner route) compile it once.
_compiled: dict[str, Check] = {}


def canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def module_name(text: str) -> str:
    """The precompiled module of the schema whose canonical text is ``text``."""
    return f"{PACKAGE}.s_{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def route_schemas(route: Route) -> Iterator[Mapping[str, Any]]:
    """Every schema a route's requests are checked against: body, path and query values."""
    if route.request_schema:
        yield route.request_schema
    yield from route.params.values()
    yield from route.query.values()


def _precompiled(text: str) -> Check | None:
    name = module_name(text)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name not in (PACKAGE, name):
            raise  # the module is there and imports something that is not: a broken zip
        return None
    if getattr(module, "SCHEMA", None) != text or getattr(
            module, "VERSION", None) != fastjsonschema.VERSION:
        return None
    check: Check = module.CHECK
    return check


def compiled(schema: Mapping[str, Any]) -> Check:
    """The check of ``schema``: precompiled if the deploy wrote it, else compiled now."""
    text = canonical(schema)
    check = _compiled.get(text)
    if check is None:
        check = _precompiled(text) or fastjsonschema.compile(dict(schema))
        _compiled[text] = check
    return check
