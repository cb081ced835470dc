"""A running process's keys, reloaded while it runs, so keys rotate without a restart.

``LiveKeys`` holds the keyring a process verifies with (one ``KeyRing`` object, swapped in
place, so every guard holding it sees the change) and the key it signs with. ``apply`` takes
a freshly read keyring document and signing secret and decides what to use (pure: no I/O):

- a document that cannot be read, or that no longer trusts this process's own keys, is
  refused and the keys in force stay (the caller logs it);
- the signing key changes only to a key the new keyring trusts (a signer never signs with
  a key its verifiers may not know yet).

``KeyReloader`` reads a ``KeySource`` (an adapter: SSM parameter, file, Secrets Manager) in a
thread, with a timeout, every ``interval_s``; an unknown key id seen by a verifier wakes it
early, at most once per ``min_gap_s`` (like a JWKS cache), so a flood of made-up key ids
costs one read per gap. Processes whose loop runs only during invocations (Lambda) call
``refresh_if_due`` before each one instead of running the loop task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from bus.errors import MeshError
from bus.security.keys import (
    InvalidKey,
    KeyRing,
    SigningKey,
    VerifyKey,
    signing_keys_from_bytes,
)

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 5.0


class KeySourceError(MeshError):
    """The keyring or the signing secret could not be read: the keys in force stay."""

    code = "key_source"
    retriable = True


@dataclass(frozen=True)
class KeyMaterial:
    """One read of the stores: the keyring document, and the signing secret's bytes (None
    when the process's key does not come from a store that changes)."""

    keyring: Mapping[str, object]
    secret: bytes | None


class KeySource(Protocol):
    def load(self) -> KeyMaterial:
        """Read both stores (blocking: runs in a thread); raises ``KeySourceError``."""
        ...


def parse_keyring(text: str | bytes) -> Mapping[str, object]:
    """A keyring document's JSON object; ``KeySourceError`` when it is not one."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeySourceError(f"the keyring is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KeySourceError("the keyring must be a JSON object {'keys': [...]}")
    return data


class LiveKeys:
    def __init__(self, service: str, keyring: KeyRing, signing_key: SigningKey | None, *,
                 extra: Iterable[VerifyKey] = ()) -> None:
        self.service = service
        self.keyring = keyring
        self._signing_key = signing_key
        self._extra = tuple(extra)  # HMAC shared keys: never published, kept on every reload
        self.version = 0

    @property
    def signing_key(self) -> SigningKey | None:
        return self._signing_key

    def apply(self, material: KeyMaterial) -> bool:
        """Use ``material`` if it is sound; True when anything changed. Raises
        ``InvalidKey`` (nothing changed) when it is not."""
        ring = KeyRing.from_dict(material.keyring)
        for key in self._extra:
            ring.add(key)
        signing = self._signing_key
        if material.secret is not None:
            stored = signing_keys_from_bytes(material.secret).current
            if stored.key_id in ring:
                signing = stored
            elif signing is not None and signing.key_id != stored.key_id:
                log.warning("signing key %s is not in the keyring yet: still signing with %s",
                            stored.key_id, signing.key_id)
        if signing is not None and signing.key_id not in ring:
            raise InvalidKey(f"the keyring does not trust {self.service}'s signing key "
                             f"{signing.key_id}; keeping the keys in force")
        changed = not ring.same_as(self.keyring) or signing != self._signing_key
        if changed:
            self.keyring.replace_with(ring)
            self._signing_key = signing
            self.version += 1
        return changed


class KeyReloader:
    def __init__(self, keys: LiveKeys, source: KeySource, interval_s: float, *,
                 min_gap_s: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self._source = source
        self.interval_s = interval_s
        self.min_gap_s = interval_s if min_gap_s is None else min_gap_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._last_attempt: float | None = None
        self._unknown = False
        self._wake: asyncio.Event | None = None
        self.failures = 0
        keys.keyring.on_unknown = self._saw_unknown

    def _saw_unknown(self, key_id: str) -> None:
        if not self._unknown:  # a flood of made-up ids wakes the loop once
            self._unknown = True
            if self._wake is not None:
                self._wake.set()

    def due(self) -> bool:
        """Time to read again: the interval passed, or an unknown key id was seen and the
        last read is at least ``min_gap_s`` old."""
        if self._last_attempt is None:
            return True
        age = self._clock() - self._last_attempt
        return age >= self.interval_s or (self._unknown and age >= self.min_gap_s)

    def _use(self, material: KeyMaterial | None, error: Exception | None) -> bool:
        self._last_attempt = self._clock()
        self._unknown = False
        if error is None and material is not None:
            try:
                changed = self.keys.apply(material)
            except InvalidKey as exc:
                error = exc
            else:
                if changed:
                    log.info("keys reloaded: version %d, signing with %s", self.keys.version,
                             getattr(self.keys.signing_key, "key_id", None))
                return changed
        self.failures += 1
        log.error("keys not reloaded, keeping version %d: %s", self.keys.version, error)
        return False

    def reload_blocking(self) -> bool:
        """Read now, on this thread (never on a running event loop)."""
        try:
            return self._use(self._source.load(), None)
        except KeySourceError as exc:
            return self._use(None, exc)

    def refresh_if_due(self) -> bool:
        """``reload_blocking`` when ``due``: before a Lambda invocation, whose loop is idle."""
        return self.reload_blocking() if self.due() else False

    async def reload_once(self) -> bool:
        """Read now, in a thread, within the timeout; applied on the loop."""
        try:
            material = await asyncio.wait_for(asyncio.to_thread(self._source.load),
                                              self._timeout_s)
        except (KeySourceError, TimeoutError) as exc:
            return self._use(None, exc)
        return self._use(material, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Reload on the interval (and early on an unknown key id) until ``stop`` is set."""
        self._wake = asyncio.Event()
        try:
            while not stop.is_set():
                if self.due():
                    await self.reload_once()
                await self._sleep(stop)
        finally:
            self._wake = None

    async def _sleep(self, stop: asyncio.Event) -> None:
        assert self._wake is not None
        last = self._last_attempt if self._last_attempt is not None else self._clock()
        gap = self.min_gap_s if self._unknown else self.interval_s
        delay = max(0.0, last + gap - self._clock())
        self._wake.clear()
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waits, timeout=delay if delay > 0 else 0.001,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
