"""Pydantic's validation errors as a person's mistakes: the line, what is wrong, the fix."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bus.policy import model as m
from bus.policy.checks import dotted
from bus.policy.model import Loc, Policy
from infra.policy.source import Problem, Source

SCHEMA_HINT = "see policies/schema.json"

PATTERNS: dict[str, str] = {
    m.SERVICE_PATTERN: "a service name: lowercase letters, digits and '-', starting with a letter",
    m.OPERATION_PATTERN: "an operation name: <service>.<verb>, e.g. orders.create",
    m.OPERATION_GLOB_PATTERN: "an operation or a pattern of them, e.g. orders.create or orders.*",
    m.TOPIC_PATTERN: "a Kafka topic name: letters, digits, '.', '_' and '-', at most 249",
    m.TOPIC_GLOB_PATTERN: "a topic name or a pattern of them, e.g. orders.*",
    m.SERVICE_SUBSET_PATTERN: 'a subset name: "" or lowercase letters, digits and \'-\'',
    m.CONFIG_KEY_PATTERN: "a Kafka config name such as max.message.bytes",
    m.KEY_ID_PATTERN_TEXT: "a key id: letters, digits, '.', '_' and '-', at most 128",
    m.ROUTE_PATH_PATTERN: "a path such as /v1/orders/{id}: '/'-separated segments of letters, "
    "digits, '.', '_', '~', '-' or a {parameter}, no trailing '/'",
}

# Hints for bounds, by the field's name.
BOUND_HINTS = {
    "timeout_ms": "API Gateway ends an integration after 29 s",
    "weight": "weights are percentages",
    "partitions": "Kafka allows 1 to 1000 here",
}

# Model-level value errors of the traffic rules: the key they are about, and the fix.
VALUE_ERRORS = {
    "split weights must sum to 100": ("split", "change the weights so that they sum to 100"),
    "a header match needs exactly one": (None, "keep exactly one of equals and prefix"),
    "min_calls (": (None, "lower min_calls or raise window"),
}

KEYED_SECTIONS = {"services": "service name", "topics": "topic name",
                  "access": "service name", "traffic": "operation name"}

# Keys a person may write under a service that belong under ``access.<service>``.
ACCESS_KEYS = {name: kind for kind in ("produce", "consume", "call")
               for name in (kind, f"{kind}s", f"{kind}_to")}

TYPE_FIXES = {
    "string_type": "write text here",
    "int_type": "write a whole number, without quotes",
    "float_type": "write a number, without quotes",
    "bool_type": "write true or false",
    "dict_type": "write a mapping (key: value lines) here",
    "model_type": "write a mapping (key: value lines) here",
    "tuple_type": "write a list here ('- item' lines or [a, b])",
    "list_type": "write a list here ('- item' lines or [a, b])",
}


def schema_problems(source: Source, error: ValidationError) -> list[Problem]:
    problems = []
    for detail in error.errors(include_url=False):
        loc: Loc = tuple(detail["loc"])
        path = loc[:-1] if loc and loc[-1] == "[key]" else loc
        path, message = _describe(source, detail, path)
        problems.append(source.problem(path, message))
    return problems


def _describe(source: Source, detail: ErrorDetails, path: Loc) -> tuple[Loc, str]:
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    value = detail.get("input")
    where = dotted(path) or "the top level"
    if detail["loc"] and detail["loc"][-1] == "[key]":
        return path, _pattern(f"the key {value!r} under {dotted(path[:-1])}", ctx)
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = _fields_at(path[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        fix = f"did you mean {close[0]}?" if close else "remove it or fix its spelling"
        moved = ACCESS_KEYS.get(key)
        if moved is not None and len(path) == 3 and path[0] == "services":
            fix = f"access has its own section: move it to access.{path[1]}.{moved}"
        return path, (f"{dotted(path[:-1]) or 'the top level'} has an unknown key {key!r}; "
                      f"{fix} (allowed here: {', '.join(allowed)})")
    if kind == "missing":
        field = str(path[-1])
        return path, f"{dotted(path[:-1]) or 'the top level'} needs {field!r}; add {field}: ..."
    if kind == "string_pattern_mismatch":
        return path, _pattern(f"{where} {value!r}", ctx)
    if kind == "literal_error":
        return path, f"{where} is {value!r}; use one of {ctx.get('expected')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        hint = BOUND_HINTS.get(str(path[-1]) if path else "", "")
        bound = detail["msg"].replace("Input should be ", "")
        fix = f"use a value {bound}" + (f" ({hint})" if hint else "")
        return path, f"{where} is {value!r}; {fix}"
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return path, f"{where}: {detail['msg'].lower()}; shorten or lengthen it accordingly"
    if kind == "value_error":
        return _value_error(source, detail, path)
    if kind in TYPE_FIXES:
        fix = TYPE_FIXES[kind]
        if kind == "string_type" and len(path) >= 2 and path[-2] == "config":
            fix = f'quote it: "{value}" (Kafka configs are text)'
        if kind == "dict_type" and len(path) == 1 and path[0] in KEYED_SECTIONS:
            fix = (f"write a mapping from each {KEYED_SECTIONS[str(path[0])]} to its settings "
                   "(the name as the key, its settings indented under it)")
        return path, f"{where} is {_kind_of(value)}; {fix}"
    return path, f"{where}: {detail['msg']}; {SCHEMA_HINT}"


def _value_error(source: Source, detail: ErrorDetails, path: Loc) -> tuple[Loc, str]:
    text = detail["msg"].removeprefix("Value error, ")
    where = dotted(path) or "the top level"
    for start, (key, fix) in VALUE_ERRORS.items():
        if text.startswith(start):
            child = (*path, key) if key is not None else path
            if key is not None and source.has(child):
                path, where = child, dotted(child)
            return path, f"{where}: {text}; {fix}"
    if ";" not in text:
        text = f"{text}; {SCHEMA_HINT}"
    return path, f"{where}: {text}"


def _pattern(subject: str, ctx: dict[str, Any]) -> str:
    pattern = str(ctx.get("pattern", ""))
    wanted = PATTERNS.get(pattern, f"text matching {pattern}")
    return f"{subject} is not valid; write {wanted}"


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "empty" if value is None else f"a {type(value).__name__}"


def _fields_at(path: Loc) -> list[str]:
    """The keys the model allows at ``path`` (``("routes", 0)`` -> Route's fields)."""
    kind: Any = Policy
    for part in path:
        kind = _bare(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (dict, tuple, list):
            args = get_args(kind)
            kind = args[1] if get_origin(kind) is dict else args[0]
        else:
            return []
    kind = _bare(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return []


def _bare(kind: Any) -> Any:
    """Without ``Annotated[...]`` and ``| None``."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(kind) if arg is not type(None)]
            if len(options) != 1:
                return kind
            kind = options[0]
        else:
            return kind
