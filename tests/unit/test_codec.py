"""bus.codec: JSON bytes in and out, refusing anything but a JSON object."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import BaseModel

from bus import codec
from bus.errors import EnvelopeError


class _Model(BaseModel):
    name: str
    amount: Decimal


def test_encode_dict_is_compact_json() -> None:
    assert codec.encode({"a": 1, "b": [1, 2]}) == b'{"a":1,"b":[1,2]}'


def test_encode_model_uses_its_json_form() -> None:
    encoded = codec.encode(_Model(name="x", amount=Decimal("1.50")))
    assert json.loads(encoded) == {"name": "x", "amount": "1.50"}


def test_round_trip() -> None:
    payload = {"text": "h\u00e9llo \u2603", "n": None, "nested": {"list": [True, 1.5]}}
    assert codec.decode(codec.encode(payload)) == payload


def test_empty_value_decodes_to_empty_object() -> None:
    assert codec.decode(b"") == {}


@pytest.mark.parametrize("value", [b"{", b"not json", b"{'a': 1}", b"\xff\xfe\x00", b"{}x"])
def test_decode_refuses_non_json(value: bytes) -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        codec.decode(value)


@pytest.mark.parametrize("value", [b"[]", b"1", b'"text"', b"null", b"true", b"[{}]"])
def test_decode_refuses_non_objects(value: bytes) -> None:
    with pytest.raises(EnvelopeError, match="JSON object"):
        codec.decode(value)


def test_decode_deeply_nested_value_raises_envelope_error() -> None:
    with pytest.raises(EnvelopeError):
        codec.decode(b'{"a":' + b"[" * 100_000)
