"""Request validation from a route's schemas, before anything reaches the bus.

Each route's JSON Schemas (body, path and query parameters) are compiled once, by
fastjsonschema (generated Python, no per-request schema walking): at deploy when the zip
carries them, else at app build (``functions.gateway.schema_checks``). fastjsonschema stops at
the first violation, so a value it refuses is checked again by ``jsonschema_rs`` (imported and
compiled on the first refusal only: valid requests never pay for it), and the 422 names every
violation with its JSON pointer: a client fixes all its fields in one round trip.

Path and query values arrive as text and are converted to the schema's type (``integer``,
``number``, ``boolean``) first, so ``?quantity=3`` meets ``{type: integer}``.

The mesh payload is the JSON body object with the path and query parameters added under
their names; a body field that a parameter also sets is refused (422), never overwritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import fastjsonschema

from bus.policy.model import Route
from functions.gateway.problems import EdgeRefusal
from functions.gateway.schema_checks import Check, canonical, compiled

_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?")
JSON_TYPES = ("application/json",)



Violations = Callable[[Any], list[tuple[list[str], str]]]
# Full validators, by canonical schema text, compiled on a schema's first refusal.
_full: dict[str, Violations] = {}


def _violations(schema: Mapping[str, Any]) -> Violations:
    """Every violation of ``schema`` by a value, as (instance path, message), in the order
    the schema declares them."""
    text = canonical(schema)
    found = _full.get(text)
    if found is None:
        import jsonschema_rs  # only a refused request pays for the import

        validator = jsonschema_rs.validator_for(dict(schema))

        def found(value: Any) -> list[tuple[list[str], str]]:
            return [([str(p) for p in error.instance_path], error.message)
                    for error in validator.iter_errors(value)]

        _full[text] = found
    return found


def _pointer(where: str, path: list[str]) -> str:
    return where + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def _errors(where: str, schema: Mapping[str, Any], value: Any,
            first: fastjsonschema.JsonSchemaValueException) -> list[dict[str, str]]:
    """Every violation of ``schema`` by ``value`` (which fastjsonschema refused with
    ``first``), each with its JSON pointer under ``where``."""
    every = [{"pointer": _pointer(where, path), "detail": message}
             for path, message in _violations(schema)(value)]
    if every:
        return every
    # The two validators disagree on this value: keep fastjsonschema's word, never pass it.
    path = [str(p) for p in (first.path or [])[1:]]  # path[0] is fastjsonschema's "data"
    message = first.message.replace("data.", "", 1).replace("data ", "", 1)
    return [{"pointer": _pointer(where, path), "detail": message}]


def convert(text: str, schema: Mapping[str, Any]) -> Any:
    """A path or query value as the type its schema wants (text stays text if it is not)."""
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind == "integer" and _INTEGER.fullmatch(text):
            return int(text)
        if kind == "number" and _NUMBER.fullmatch(text):
            return int(text) if _INTEGER.fullmatch(text) else float(text)
        if kind == "boolean" and text in ("true", "false"):
            return text == "true"
    return text


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every request (``json.loads`` with options builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _loads(body: bytes) -> Any:
    """``json.loads(body, parse_constant=_no_constants)``, without the per-call decoder."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


class _Param(NamedTuple):  # not a dataclass: see functions.gateway.auth.jwks
    name: str
    schema: Mapping[str, Any]
    check: Check


class RouteValidator:
    """Turns one request of ``route`` into its mesh payload, or raises ``EdgeRefusal``."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.takes_body = route.method in ("POST", "PUT", "PATCH", "ANY") or (
            route.request_schema is not None)
        self._body_schema = route.request_schema
        self._body = compiled(route.request_schema) if route.request_schema else None
        self._params = [_Param(n, s, compiled(s)) for n, s in route.params.items()]
        self._query = [_Param(n, s, compiled(s)) for n, s in route.query.items()]
        self._required_query = frozenset(route.required_query)
        self._query_names = frozenset(p.name for p in self._query)

    def payload(self, path: Mapping[str, str], query: Mapping[str, str],
                content_type: str | None, body: bytes) -> dict[str, Any]:
        errors: list[dict[str, str]] = []
        values: dict[str, Any] = {}
        for param in self._params:
            values[param.name] = self._checked(param, path.get(param.name, ""), "/path", errors)
        for name, text in path.items():  # path parameters without a schema pass as text
            values.setdefault(name, text)
        if query:
            unknown = sorted(set(query) - self._query_names)
            errors.extend({"pointer": f"/query/{name}", "detail": "is not an accepted parameter"}
                          for name in unknown)
        for param in self._query:
            if param.name in query:
                values[param.name] = self._checked(param, query[param.name], "/query", errors)
            elif param.name in self._required_query:
                errors.append({"pointer": f"/query/{param.name}", "detail": "is required"})
        document = self._document(content_type, body)
        if self._body is not None and self._body_schema is not None:
            try:
                self._body(document)
            except fastjsonschema.JsonSchemaValueException as exc:
                errors.extend(_errors("/body", self._body_schema, document, exc))
        if document is not None and not isinstance(document, dict):
            errors.append({"pointer": "/body", "detail": "must be a JSON object"})
        elif document and values:
            clash = sorted(set(document) & set(values))
            errors.extend({"pointer": f"/body/{name}",
                           "detail": "is also a path or query parameter; send it once"}
                          for name in clash)
            values = {**document, **values}
        elif document:
            values = document  # parsed for this request alone: no copy needed
        if errors:
            raise EdgeRefusal(422, "invalid_request", "the request does not match the route's "
                              "schema; see errors", errors=errors)
        return values

    def _checked(self, param: _Param, text: str, where: str,
                 errors: list[dict[str, str]]) -> Any:
        value = convert(text, param.schema)
        try:
            param.check(value)
        except fastjsonschema.JsonSchemaValueException as exc:
            errors.extend(_errors(f"{where}/{param.name}", param.schema, value, exc))
        return value

    def _document(self, content_type: str | None, body: bytes) -> Any:
        if not body.strip():
            if self._body is not None:
                raise EdgeRefusal(422, "invalid_request", "the route needs a JSON body",
                                  errors=[{"pointer": "/body", "detail": "is required"}])
            return None
        if not self.takes_body:
            raise EdgeRefusal(400, "unexpected_body", f"{self.route.method} takes no body")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise EdgeRefusal(415, "unsupported_media_type",
                              "send the body as application/json",
                              headers={"Accept": "application/json"})
        try:
            return _loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting recurses
            raise EdgeRefusal(400, "malformed_json", "the body is not valid JSON") from None
