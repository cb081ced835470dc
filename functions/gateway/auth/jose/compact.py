"""A compact JWS (RFC 7515 §7.1) split into its parts, and its JSON read strictly.

The protected header is read before any key is chosen, so it is the one piece of an
unauthenticated token that is parsed as JSON; the payload's JSON is read only after its
signature has been checked (:func:`json_object`). The JSON must be UTF-8, one object, with
no member named twice (RFC 7515 §5.2 allows refusing them; refusing leaves no doubt about
which value was signed) and no ``NaN`` or ``Infinity``.

No JWS extension is understood: a header with ``crit`` (RFC 7515 §4.1.11) or with ``b64``
other than ``true`` (RFC 7797, unencoded or detached payloads) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

from bus.security.b64url import decode_b64url
from functions.gateway.auth.errors import MalformedBearer


class CompactJws(NamedTuple):  # not a dataclass: see functions.gateway.auth.jwks
    header: Mapping[str, Any]
    signing_input: bytes  # ``<header>.<payload>`` as sent: what the signature covers
    payload: bytes  # decoded, not yet read as JSON
    signature: bytes


def malformed(what: str) -> MalformedBearer:
    return MalformedBearer(f"the bearer token cannot be decoded ({what})",
                           reason="malformed_token")


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a member is named twice")
    return obj


# One decoder for every token (``json.loads`` with options builds a new one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_no_constants)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as one strict JSON object; raises :class:`MalformedBearer`."""
    try:
        parsed = _DECODER.decode(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise malformed(f"its {what} is not JSON") from None
    if not isinstance(parsed, dict):
        raise malformed(f"its {what} is not a JSON object")
    return parsed


def parse(token: str) -> CompactJws:
    """Split ``token`` and read its protected header; raises :class:`MalformedBearer`."""
    parts = token.split(".")
    if len(parts) != 3:
        raise malformed("not three segments")
    try:
        header_bytes, payload, signature = (decode_b64url(part) for part in parts)
    except ValueError:
        raise malformed("a segment is not base64url") from None
    header = json_object(header_bytes, "header")
    if "crit" in header:
        raise malformed("it names critical extensions")
    if header.get("b64", True) is not True:
        raise malformed("its payload is not base64url encoded")
    signing_input = token[: len(parts[0]) + 1 + len(parts[1])].encode("ascii")
    return CompactJws(header, signing_input, payload, signature)
