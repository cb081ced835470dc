"""DynamoDB's binary attribute values on the JSON wire (pure): ``B`` is base64 text there
and ``bytes`` in the stores' items, ``BS`` a list of them, anywhere inside ``M`` and ``L``
(as botocore serializes and parses them for the AttributeValue shape)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

# Top-level request and response members that hold AttributeValues, by how they nest.
ITEM_MEMBERS = ("Item", "Key", "Attributes", "ExclusiveStartKey", "LastEvaluatedKey")
VALUE_MAP_MEMBERS = ("ExpressionAttributeValues",)
ITEM_LIST_MEMBERS = ("Items",)


def _value(value: Any, blob: Callable[[Any], Any]) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": blob(inner)}
    if kind == "BS":
        return {"BS": [blob(v) for v in inner]}
    if kind == "M":
        return {"M": {k: _value(v, blob) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_value(v, blob) for v in inner]}
    return value


def _members(data: Mapping[str, Any], blob: Callable[[Any], Any]) -> dict[str, Any]:
    out = dict(data)
    for name in ITEM_MEMBERS + VALUE_MAP_MEMBERS:
        if isinstance(out.get(name), Mapping):
            out[name] = {k: _value(v, blob) for k, v in out[name].items()}
    for name in ITEM_LIST_MEMBERS:
        if isinstance(out.get(name), list):
            out[name] = [{k: _value(v, blob) for k, v in item.items()} for item in out[name]]
    return out


def _encode(raw: Any) -> str:
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    return base64.b64encode(data).decode("ascii")


def _decode(text: Any) -> bytes:
    return base64.b64decode(text, validate=True)


def to_wire(params: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as JSON: every binary value base64 text."""
    return _members(params, _encode)


def from_wire(body: Mapping[str, Any]) -> dict[str, Any]:
    """A response (or a modeled error) as the stores read it: every binary value bytes."""
    return _members(body, _decode)
