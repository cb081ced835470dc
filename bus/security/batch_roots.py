"""Batch roots a receiver has verified, so the rest of a batch costs hashes, not Ed25519.

An entry records that the key ``key_id`` (with exactly this public key) signed the root of a
``count``-message batch with exactly this signature (``bus.security.batch_sig``). Only a
verified signature is remembered; the key is looked up in the keyring before the cache is
consulted, so a key removed from the keyring stops being accepted at once, and a record whose
signature bytes differ from the verified ones misses and is checked in full (every record a
receiver admits would verify alone, in ``meshgate tail`` or the Java verifier). Bounded: the
oldest entry leaves first.
"""

from __future__ import annotations

from typing import Final

from bus.security.keys import VerifyKey

# A root is worth keeping only while the rest of its batch is still arriving: 256 covers as
# many senders batching at once; a miss costs one Ed25519 verification, never a refusal.
MAX_ROOTS: Final = 256

_Entry = tuple[str, bytes, int, bytes, bytes]


class BatchRoots:
    """Not thread-safe; one per receiving process (an ``InboundGuard`` holds one)."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int = MAX_ROOTS) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max_entries = max_entries
        self._entries: dict[_Entry, None] = {}  # insertion-ordered: the oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def known(self, key: VerifyKey, count: int, root: bytes, signature: bytes) -> bool:
        return (key.key_id, key.material, count, root, signature) in self._entries

    def remember(self, key: VerifyKey, count: int, root: bytes, signature: bytes) -> None:
        entries = self._entries
        if len(entries) >= self._max_entries:
            del entries[next(iter(entries))]
        entries[(key.key_id, key.material, count, root, signature)] = None
