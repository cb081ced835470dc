"""Refusing replays: a bounded memory of the message ids seen inside the freshness window.

Pure: the caller passes the current time. Run it after ``bus.security.signing.verify`` and
``check_fresh``, so ids and times are ones an authentic sender chose.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Hashable
from hashlib import blake2b

from bus.errors import MeshError

DIGEST_BYTES = 16


class ReplayedMessage(MeshError):
    """A message id already seen inside the freshness window."""

    code = "replayed_message"


class PossibleReplay(ReplayedMessage):
    """Older than the guard's horizon: it may have been seen and forgotten, so it is refused."""

    code = "possible_replay"


class ReplayGuard:
    """Remembers message ids by their ``ce_time`` for ``window_ms``, at most ``max_entries``.

    The guard keeps a horizon and refuses any message with ``time_ms`` below it, because
    it can no longer tell whether such a message is new. The horizon only moves forward:
    to ``now_ms - window_ms`` (anything older is stale anyway), and past the time of every
    id evicted for lack of room (so a flood of new ids cannot make the guard forget an id
    and then accept its replay). Size ``max_entries`` above peak messages per window, or a
    flood will also refuse legitimate messages that arrive slightly out of order.

    ``message_id`` is whatever the caller deduplicates on; CloudEvents makes ``source`` plus
    ``id`` unique, so include the source when ids are not globally unique.

    ``position`` (``record_position``: partition and offset) tells a redelivery from a
    replay: after a rebalance or a restart the broker hands out the very same record again,
    at the position it was first seen, and that is accepted (the idempotency store answers
    it). The same id at any other position is a copy someone wrote again: a replay. Only the
    broker assigns offsets, so a sender cannot make a copy land on the original's position.

    An id is remembered as its 16-byte BLAKE2b digest under a key drawn for this guard (a
    worker holds its window's ids: ~10k at 5k messages/s, up to ``max_entries``; the digest
    and an integer position take ~170 bytes an entry instead of ~300 with the id's text and a
    position string). Two ids share a digest with odds of about n^2 / 2^129 among n ids, and
    without the key no sender can aim for it; a shared digest could only refuse a genuine
    message, never admit a replay.
    """

    def __init__(self, window_ms: int, max_entries: int) -> None:
        if window_ms < 0:
            raise ValueError(f"window_ms must be >= 0, got {window_ms}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._window_ms = window_ms
        self._max_entries = max_entries
        self._key = os.urandom(16)
        self._position_by_digest: dict[bytes, Hashable | None] = {}
        self._oldest_first: list[tuple[int, bytes]] = []
        self._horizon_ms: int | None = None

    @property
    def horizon_ms(self) -> int | None:
        """Messages with ``time_ms`` below this are refused; None until time has been seen."""
        return self._horizon_ms

    def __len__(self) -> int:
        return len(self._position_by_digest)

    def check_and_remember(self, message_id: str, time_ms: int, now_ms: int,
                           position: Hashable | None = None) -> None:
        """Accept and remember ``message_id``, or raise ``ReplayedMessage``/``PossibleReplay``."""
        self._advance_horizon(now_ms - self._window_ms)
        digest = blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES,
                         key=self._key).digest()
        positions = self._position_by_digest
        if digest in positions:
            if position is not None and positions[digest] == position:
                return  # the same record delivered again: not a replay
            raise ReplayedMessage("message id already seen inside the freshness window")
        if self._horizon_ms is not None and time_ms < self._horizon_ms:
            raise PossibleReplay(
                f"message time {time_ms} is before the replay horizon {self._horizon_ms}"
            )
        positions[digest] = position
        heapq.heappush(self._oldest_first, (time_ms, digest))
        if len(positions) > self._max_entries:
            evicted_time, _ = self._oldest_first[0]
            self._advance_horizon(evicted_time + 1)

    def _advance_horizon(self, horizon_ms: int) -> None:
        if self._horizon_ms is not None:
            horizon_ms = max(horizon_ms, self._horizon_ms)
        self._horizon_ms = horizon_ms
        while self._oldest_first and self._oldest_first[0][0] < horizon_ms:
            _, digest = heapq.heappop(self._oldest_first)
            del self._position_by_digest[digest]


def record_position(partition: int, offset: int) -> int:
    """A record's place in its topic as one integer (exact: offsets are below 2^63)."""
    return partition << 64 | offset
