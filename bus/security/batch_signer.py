"""Seals the messages a process sends in one event-loop turn with one Ed25519 signature.

``seal`` queues the message and returns a future; the first message of a turn schedules the
flush (``loop.call_soon``), which runs after every task that was ready in that turn has
queued its message. The flush signs the batch's Merkle root once (``bus.security.batch_sig``)
and resolves each future with its message carrying its own ``mesh_sig``. Nothing waits for a
batch to fill: a message alone in its turn is signed alone (``ed25519:``), today's cost and
format, one loop turn later. At most ``max_batch`` messages share a root (the path, one
32-byte hash per level, travels with every message).

The futures resolve in the order the messages were queued, so tasks that send after sealing
send in that order, as they would have without the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from bus.envelope import Envelope
from bus.errors import MeshError
from bus.security.batch_sig import batch_signatures, leaf_hash, root_message, tree
from bus.security.keys import ED25519, SigningKey
from bus.security.signing import canonical_bytes, sign, sign_bytes

MAX_BATCH: Final = 64

_Pending = tuple[Envelope, str, "asyncio.Future[Envelope]"]


class NoKeyAtFlush(MeshError):
    """The signing key in force when a batch was queued was gone when it was flushed: its
    messages are refused, never sent unsigned."""

    code = "no_signing_key"


def seal_batch(messages: list[tuple[Envelope, str]], key: SigningKey) -> list[Envelope]:
    """Each message with its ``mesh_sig``: one signature over the batch's root (pure)."""
    if len(messages) == 1 or key.algorithm != ED25519:
        return [sign(envelope, topic, key) for envelope, topic in messages]
    root, paths = tree([leaf_hash(canonical_bytes(envelope, topic))
                        for envelope, topic in messages])
    signature = sign_bytes(root_message(len(messages), root), key)
    return [envelope.with_signature(text) for (envelope, _), text
            in zip(messages, batch_signatures(key.key_id, signature, paths), strict=True)]


class BatchSigner:
    """One per sending identity; used from one event loop at a time."""

    __slots__ = ("_key", "_loop", "_max_batch", "_pending")

    def __init__(self, key: Callable[[], SigningKey | None], *, max_batch: int = MAX_BATCH
                 ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._key = key  # the key in force at the flush (it changes during a rotation)
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def seal(self, envelope: Envelope, topic: str) -> asyncio.Future[Envelope]:
        """A future of ``envelope`` signed for ``topic``, resolved in the next loop turn."""
        loop = asyncio.get_running_loop()
        if self._pending and loop is not self._loop:
            self._orphaned()
        future: asyncio.Future[Envelope] = loop.create_future()
        if not self._pending:
            self._loop = loop
            loop.call_soon(self._flush)
        self._pending.append((envelope, topic, future))
        return future

    def _orphaned(self) -> None:
        """The pending batch of a loop this process no longer runs (tests run several, one
        after another): signed now if that loop is still open, else dropped with the loop,
        whose tasks can no longer wait for it."""
        if self._loop is not None and not self._loop.is_closed():
            self._flush()
        else:
            self._pending = []

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        key = self._key()
        for start in range(0, len(pending), self._max_batch):
            chunk = pending[start:start + self._max_batch]
            try:
                if key is None:
                    raise NoKeyAtFlush("no signing key in force when the batch was signed; "
                                       "its messages were not sent")
                sealed = seal_batch([(envelope, topic) for envelope, topic, _ in chunk], key)
            except Exception as exc:  # every caller hears it; none waits forever
                for _, _, future in chunk:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), envelope in zip(chunk, sealed, strict=True):
                if not future.done():  # a caller that was cancelled no longer waits
                    future.set_result(envelope)
