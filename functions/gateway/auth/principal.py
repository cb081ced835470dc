"""The authenticated caller, in a form that can travel into a mesh message."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

AuthMethod = Literal["jwt", "api_key"]
# What a carried claim may hold: JSON scalars or a list of strings (``aud``, ``groups``).
ClaimValue = str | int | float | bool | tuple[str, ...]


def carried_value(value: object) -> ClaimValue | None:
    """``value`` if it may travel in a principal, else ``None`` (nested objects do not)."""
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(str(item) for item in value)
    return None


@dataclass(frozen=True)
class Principal:
    """Who made the call, as established by the gateway.

    ``subject`` is the token's ``sub`` or the API key's owner; ``claims`` is the configured
    subset of the token's claims (never the token itself); ``key_id`` names the API key.
    """

    subject: str
    method: AuthMethod
    issuer: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, ClaimValue] = field(default_factory=dict)
    key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.subject:
            raise ValueError("a principal needs a subject")
        object.__setattr__(self, "scopes", frozenset(self.scopes))
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready, deterministic form (sorted scopes) for a mesh header or payload."""
        data: dict[str, Any] = {"sub": self.subject, "method": self.method}
        if self.issuer is not None:
            data["iss"] = self.issuer
        if self.scopes:
            data["scopes"] = sorted(self.scopes)
        if self.claims:
            data["claims"] = {
                name: list(value) if isinstance(value, tuple) else value
                for name, value in sorted(self.claims.items())
            }
        if self.key_id is not None:
            data["key_id"] = self.key_id
        return data

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        """Computed once: a cached JWT's principal travels with every request it makes."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Principal:
        """The inverse of :meth:`to_dict`; raises ``ValueError`` on anything malformed."""
        subject, method = data.get("sub"), data.get("method")
        if not isinstance(subject, str) or method not in ("jwt", "api_key"):
            raise ValueError("not a principal: needs a string 'sub' and a known 'method'")
        issuer, key_id = data.get("iss"), data.get("key_id")
        if issuer is not None and not isinstance(issuer, str):
            raise ValueError("a principal's 'iss' must be a string")
        if key_id is not None and not isinstance(key_id, str):
            raise ValueError("a principal's 'key_id' must be a string")
        scopes = data.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError("a principal's 'scopes' must be a list of strings")
        raw_claims = data.get("claims", {})
        if not isinstance(raw_claims, Mapping):
            raise ValueError("a principal's 'claims' must be an object")
        claims: dict[str, ClaimValue] = {}
        for name, value in raw_claims.items():
            carried = carried_value(value)
            if carried is None:
                raise ValueError("a principal's claims must be scalars or lists of strings")
            claims[str(name)] = carried
        return cls(
            subject=subject,
            method="jwt" if method == "jwt" else "api_key",
            issuer=issuer,
            scopes=frozenset(scopes),
            claims=claims,
            key_id=key_id,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Principal:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError("not a principal: invalid JSON") from error
        if not isinstance(data, dict):
            raise ValueError("not a principal: not a JSON object")
        return cls.from_dict(data)
