"""Verified JWTs remembered until their expiry, so a caller's next request skips the
signature check (issue 15: an ES256 verification and the token's parsing were most of the
JWT route's cost).

Semantics (docs/decisions.md, "Verified JWTs are cached"): a JWT is a bearer credential valid
until its ``exp`` by design; nothing revokes one sooner at this edge, cached or not. A cached
entry answers only the exact token bytes that were verified (keyed by their SHA-256), by the
verifier that verified them (one cache per verifier: its issuers, audiences, algorithms and
key set), and only:

- while ``now < exp + leeway`` (what the verifier itself accepts), checked on every hit, so an
  expired token is refused ``token_expired`` whether or not it was cached;
- for at most ``max_age_s`` after it was verified (the key set's refresh interval), so a key
  the issuer withdraws from its JWKS stops being trusted within the same window in which the
  cached key set would still have accepted it.

Failures are never cached (a refused token is checked again in full every time), the cache
is bounded (``max_entries``, oldest evicted first), and the principal it hands out is
immutable (``Principal`` is frozen, its claims a read-only mapping).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import NamedTuple

from functions.gateway.auth.principal import Principal

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_AGE_S = 300.0


class _Entry(NamedTuple):  # not a dataclass: see functions.gateway.auth.jwks
    principal: Principal
    expires_at: float  # epoch seconds: exp + leeway, after which the token is expired
    trusted_until: float  # epoch seconds: verified at + max_age_s


class VerifiedTokens:
    """A bounded map from a token's digest to the principal its verification produced."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1 or max_age_s <= 0:
            raise ValueError("max_entries must be at least 1 and max_age_s positive")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self.hits = 0  # for tests and the bench

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode("ascii", "surrogateescape")).digest()

    def lookup(self, digest: bytes) -> tuple[Principal | None, bool]:
        """``(principal, expired)``: the cached principal of a token still valid, or
        ``(None, True)`` when the token was cached and has expired since (the caller refuses
        it ``token_expired``), or ``(None, False)`` when it must be verified in full."""
        entry = self._entries.get(digest)
        if entry is None:
            return None, False
        now = self._clock()
        if now >= entry.expires_at:
            del self._entries[digest]
            return None, True
        if now >= entry.trusted_until:
            del self._entries[digest]
            return None, False
        self.hits += 1
        return entry.principal, False

    def remember(self, digest: bytes, principal: Principal, exp: float,
                 leeway_s: float) -> None:
        """Keep a token that has just been verified, ``exp`` being its ``exp`` claim."""
        now = self._clock()
        entry = _Entry(principal, exp + leeway_s, now + self.max_age_s)
        if entry.expires_at <= now:
            return
        entries = self._entries
        if digest not in entries and len(entries) >= self.max_entries:
            del entries[next(iter(entries))]  # the oldest: insertion order
        entries[digest] = entry

    def __len__(self) -> int:
        return len(self._entries)
