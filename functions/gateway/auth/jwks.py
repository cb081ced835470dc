"""JSON Web Key Sets: parsing, key selection, fetching and caching.

Three layers, so the security-relevant part is pure and testable on its own:

- :func:`parse_jwks` and :func:`select_key` are pure: a document in, a :class:`KeySet` out;
  a key set, a key id and an algorithm in, one :class:`PublicKey` (or an error) out. Only
  asymmetric *public* signing keys are ever kept, so no HMAC secret can come from a JWKS.
- :class:`StaticJwks` (configuration) and :class:`UrlJwks` (stdlib ``urllib`` in a worker
  thread, bounded timeout and size) are the sources.
- :class:`JwksCache` keeps the last key set for a TTL and refreshes once, rate-limited, when
  a token names a key id it does not know.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from functions.gateway.auth.errors import InvalidToken, KeySetUnavailable, UnknownKey
from functions.gateway.auth.jose import keys as jwk_keys
from functions.gateway.auth.jose.keys import VerifyingKey

# The only algorithms a verifier may allow: asymmetric signatures, each with the key type
# (and EC curve) it needs. No ``none``, no HMAC: those are refused wherever this is used.
ASYMMETRIC_ALGORITHMS: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
MAX_JWKS_BYTES = 512 * 1024


# NamedTuples, not dataclasses, here and in the JWT verifier's other modules: they load when
# the app is built, and Python 3.11 takes 0.2-0.5 ms to make a dataclass (docs/decisions.md,
# "JWTs verified without PyJWT").
class PublicKey(NamedTuple):
    """One usable verification key of a key set."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own ``alg`` member, if it pins one
    key: VerifyingKey

    def accepts(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be verified with this key."""
        wanted = ASYMMETRIC_ALGORITHMS.get(alg)
        if wanted is None:
            return False
        kty, crv = wanted
        if self.kty != kty or (self.alg is not None and self.alg != alg):
            return False
        if kty == "EC":
            return self.crv == crv
        if kty == "OKP":
            return self.crv in jwk_keys.OKP_CURVES
        return True


class KeySet(NamedTuple):
    keys: tuple[PublicKey, ...] = ()

    def with_kid(self, kid: str) -> tuple[PublicKey, ...]:
        return tuple(key for key in self.keys if key.kid == kid)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(key.kid for key in self.keys if key.kid is not None)


def _public_key(jwk: Mapping[str, Any]) -> PublicKey | None:
    """The verification key of one JWK, or ``None`` if it is not a public signing key."""
    kty, kid, alg, crv = jwk.get("kty"), jwk.get("kid"), jwk.get("alg"), jwk.get("crv")
    if kty not in ("RSA", "EC", "OKP") or (kid is not None and not isinstance(kid, str)):
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    if alg is not None and (not isinstance(alg, str)
                            or ASYMMETRIC_ALGORITHMS.get(alg, ("", None))[0] != kty):
        return None
    if crv is not None and not isinstance(crv, str):
        return None
    # None: a JWK that cannot be loaded is skipped, private key material included
    key = jwk_keys.public_key(jwk)
    if key is None:
        return None
    return PublicKey(kid=kid, kty=kty, crv=crv, alg=alg, key=key)


def parse_jwks(document: Mapping[str, Any] | str | bytes) -> KeySet:
    """Parse a JWKS document, keeping only asymmetric public signing keys.

    Raises ``ValueError`` if the document is not a JSON object with a ``keys`` list; keys
    that are unusable (symmetric, private, encryption-only, unknown type) are skipped.
    """
    parsed: object = document
    if isinstance(document, str | bytes):
        try:
            parsed = json.loads(document)
        except ValueError as error:
            raise ValueError("the JWKS is not valid JSON") from error
    if not isinstance(parsed, Mapping):
        raise ValueError("the JWKS is not a JSON object")
    members = parsed.get("keys")
    if not isinstance(members, list):
        raise ValueError("the JWKS has no 'keys' list")
    keys = (_public_key(jwk) for jwk in members if isinstance(jwk, Mapping))
    return KeySet(tuple(key for key in keys if key is not None))


def select_key(keys: KeySet, kid: str | None, alg: str) -> PublicKey:
    """The key that verifies a token with header ``kid`` and ``alg``.

    Raises :class:`UnknownKey` if no key has that id (or, for a token without ``kid``, if
    the set has not exactly one key for ``alg``), and :class:`InvalidToken` if the key
    exists but is not of the kind ``alg`` needs.
    """
    if kid is None:
        candidates = [key for key in keys.keys if key.accepts(alg)]
        if len(candidates) != 1:
            raise UnknownKey("the token names no key id and no single key matches it")
        return candidates[0]
    named = keys.with_kid(kid)
    if not named:
        raise UnknownKey("the token's key id is not in the key set")
    for key in named:
        if key.accepts(alg):
            return key
    raise InvalidToken(
        "the token's algorithm does not match its key", reason="algorithm_mismatch"
    )


class JwksSource(Protocol):
    async def fetch(self) -> KeySet:
        """The current key set; raises :class:`KeySetUnavailable` when it cannot be had."""
        ...


class StaticJwks:
    """A key set from configuration (a JSON string or an already-parsed dict)."""

    def __init__(self, document: Mapping[str, Any] | str | bytes) -> None:
        self._keys = parse_jwks(document)  # fail at configuration time, not on a request

    async def fetch(self) -> KeySet:
        return self._keys


class UrlJwks:
    """A key set fetched over HTTP(S) with the stdlib, in a worker thread."""

    def __init__(
        self, url: str, *, timeout_s: float = 3.0, max_bytes: int = MAX_JWKS_BYTES
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("a JWKS URL must be http or https")
        if timeout_s <= 0 or max_bytes <= 0:
            raise ValueError("timeout_s and max_bytes must be positive")
        self.url = url
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def _get(self) -> bytes:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:
            error.close()  # it holds the connection open; keep only the status
            raise OSError(f"the JWKS endpoint answered HTTP {error.code}") from None
        with response:
            body: bytes = response.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise ValueError("the JWKS document is too large")
        return body

    async def fetch(self) -> KeySet:
        try:
            body = await asyncio.to_thread(self._get)
            return parse_jwks(body)
        except (OSError, ValueError, urllib.error.URLError) as error:
            raise KeySetUnavailable("the signing keys could not be fetched") from error


class JwksCache:
    """The last key set of a source, kept for ``ttl_s``.

    A token with an unknown key id triggers one refresh, at most once per
    ``min_refresh_interval_s`` (so random key ids cannot hammer the identity provider). When
    a refresh fails the previous keys stay in use; with no keys at all the failure is a
    :class:`KeySetUnavailable` (503), again retried at most once per interval.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        ttl_s: float = 300.0,
        min_refresh_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or min_refresh_interval_s < 0:
            raise ValueError("ttl_s must be positive and min_refresh_interval_s not negative")
        self._source = source
        self._ttl_s = ttl_s
        self._min_interval_s = min_refresh_interval_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: KeySet | None = None
        self._expires_at = 0.0
        self._last_attempt: float | None = None
        self._generation = 0
        self.fetches = 0  # attempts made, for tests and metrics

    def _may_fetch(self) -> bool:
        last = self._last_attempt
        return last is None or self._clock() - last >= self._min_interval_s

    async def _fetch_locked(self) -> KeySet:
        self._last_attempt = self._clock()
        self.fetches += 1
        keys = await self._source.fetch()
        self._keys, self._expires_at = keys, self._clock() + self._ttl_s
        self._generation += 1
        return keys

    async def keys(self) -> KeySet:
        """The cached key set, fetched first if there is none or it has expired."""
        keys = self._keys
        if keys is not None and self._clock() < self._expires_at:
            return keys
        async with self._lock:
            if self._keys is not None and self._clock() < self._expires_at:
                return self._keys
            if not self._may_fetch():
                if self._keys is not None:
                    return self._keys
                raise KeySetUnavailable("the signing keys are not available yet")
            try:
                return await self._fetch_locked()
            except KeySetUnavailable:
                if self._keys is not None:
                    return self._keys  # stale keys beat no keys while the provider is down
                raise

    async def _refresh_for(self, generation: int) -> KeySet | None:
        """A newer key set than ``generation``, or ``None`` if a refresh is not allowed yet."""
        async with self._lock:
            if self._generation != generation and self._keys is not None:
                return self._keys  # another caller refreshed while we waited
            if not self._may_fetch():
                return None
            return await self._fetch_locked()

    async def key_for(self, kid: str | None, alg: str) -> PublicKey:
        """The key for a token's ``kid`` and ``alg``, refreshing once on an unknown ``kid``."""
        keys = await self.keys()
        generation = self._generation
        try:
            return select_key(keys, kid, alg)
        except UnknownKey:
            if kid is None:
                raise
        refreshed = await self._refresh_for(generation)
        if refreshed is None:
            raise UnknownKey("the token's key id is not in the key set")
        return select_key(refreshed, kid, alg)
