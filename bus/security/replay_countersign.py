"""An operator's countersignature on a replayed dead letter (pure).

``meshgate dlq replay`` republishes the *original* record of a dead letter unchanged (its
value, its signed headers and its own ``mesh_sig``; the failure headers dropped) to the base
topic, plus three headers:

- ``mesh_replay_id``: a new id, what the replay is deduplicated on (``replay:<id>``);
- ``mesh_replay_time``: epoch ms of the replay, what its freshness is judged on;
- ``mesh_replay_sig``: ``<algorithm>:<key_id>:<base64url>`` by an operator's key over
  ``countersign_bytes``: a versioned domain, the topic, the replay id and time, the
  original's canonical bytes and its signature.

The operator never signs *as* a service: the original proves who said what, the
countersignature proves who asked for it to be handled once more. A receiver verifies the
original as usual, then ``check_replay``: replay headers that are partial, malformed, by an
unknown key or not matching are ``bad_replay_countersignature``; a valid one by a key whose
owner the policy does not let replay onto the topic (a service's own key included), or on
anything but an event, is ``replay_not_allowed``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bus.envelope import H_REPLAY_ID, H_REPLAY_SIG, H_REPLAY_TIME, KIND_EVENT, Envelope
from bus.errors import MeshError
from bus.security.keys import KeyRing, SigningKey, UnknownKeyId, VerifyKey
from bus.security.signing import (
    SignatureError,
    SignatureHeader,
    canonical_bytes,
    parse_signature,
    sign_bytes,
    signature_valid,
)

# Versions the encoding: a future change of fields cannot verify as this one, and no mesh_sig
# (domain meshgate-sig-v2) can be taken for a countersignature or the other way round.
REPLAY_DOMAIN = b"meshgate-replay-v1"
REPLAY_HEADERS = frozenset({H_REPLAY_ID, H_REPLAY_TIME, H_REPLAY_SIG})
REPLAY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
_DIGITS = re.compile(r"0|[1-9][0-9]{0,18}")  # one spelling: the countersignature covers it
_LENGTH = struct.Struct(">Q")

MayReplay = Callable[[str, str], bool]  # (operator, topic) -> allowed


class BadReplayCountersignature(MeshError):
    """Replay headers that do not prove an operator asked for this replay."""

    code = "bad_replay_countersignature"


class ReplayNotAllowed(MeshError):
    """A valid countersignature whose owner may not replay onto this topic (or not this kind)."""

    code = "replay_not_allowed"


@dataclass(frozen=True)
class ReplayStamp:
    """The parsed replay headers of a record."""

    replay_id: str
    time_ms: int
    signature: str

    @property
    def dedupe_key(self) -> str:
        """What a verified replay is deduplicated on: its own id, not the original's."""
        return replay_key(self.replay_id)


def replay_key(replay_id: str) -> str:
    return f"replay:{replay_id}"


def countersign_bytes(envelope: Envelope, topic: str, replay_id: str, time_ms: int) -> bytes:
    """The bytes a countersignature covers (length-prefixed, fixed order)."""
    fields = (REPLAY_DOMAIN, topic.encode("utf-8", "surrogatepass"), replay_id.encode(),
              str(time_ms).encode(), canonical_bytes(envelope, topic),
              (envelope.signature or "").encode("utf-8", "surrogatepass"))
    return b"".join(_LENGTH.pack(len(data)) + data for data in fields)


def countersign(envelope: Envelope, topic: str, key: SigningKey, *, replay_id: str,
                time_ms: int) -> tuple[tuple[str, bytes], ...]:
    """The replay headers for republishing the signed ``envelope`` to ``topic``."""
    if envelope.signature is None:
        raise BadReplayCountersignature("only a signed original can be countersigned")
    if not REPLAY_ID_PATTERN.fullmatch(replay_id):
        raise BadReplayCountersignature(f"replay id must match {REPLAY_ID_PATTERN.pattern}")
    signature = sign_bytes(countersign_bytes(envelope, topic, replay_id, time_ms), key)
    header = SignatureHeader(key.algorithm, key.key_id, signature).encode()
    return ((H_REPLAY_ID, replay_id.encode()), (H_REPLAY_TIME, str(time_ms).encode()),
            (H_REPLAY_SIG, header.encode()))


def without_replay_headers(extra: Iterable[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, raw) for name, raw in extra if name not in REPLAY_HEADERS)


def parse_stamp(extra: Iterable[tuple[str, bytes]]) -> ReplayStamp | None:
    """The replay headers among ``extra``; None when there are none (not a replay).

    Raises ``BadReplayCountersignature`` when some are present but one is missing,
    repeated or malformed.
    """
    found: dict[str, str] = {}
    for name, raw in extra:
        if name not in REPLAY_HEADERS:
            continue
        if name in found:
            raise BadReplayCountersignature(f"header {name} appears twice")
        try:
            found[name] = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BadReplayCountersignature(f"header {name} is not ASCII") from exc
    if not found:
        return None
    missing = sorted(REPLAY_HEADERS - set(found))
    if missing:
        raise BadReplayCountersignature(f"replay headers incomplete: {', '.join(missing)} missing")
    if not REPLAY_ID_PATTERN.fullmatch(found[H_REPLAY_ID]):
        raise BadReplayCountersignature(f"{H_REPLAY_ID} must match {REPLAY_ID_PATTERN.pattern}")
    if not _DIGITS.fullmatch(found[H_REPLAY_TIME]):
        raise BadReplayCountersignature(f"{H_REPLAY_TIME} must be epoch ms")
    return ReplayStamp(found[H_REPLAY_ID], int(found[H_REPLAY_TIME]), found[H_REPLAY_SIG])


def check_replay(envelope: Envelope, topic: str, keyring: KeyRing | None,
                 may_replay: MayReplay) -> ReplayStamp | None:
    """None for a record that is not a replay; the verified stamp of one that is.

    Run after the original's own ``bus.security.signing.verify`` against ``topic`` (the base topic).
    ``keyring`` None (explicitly insecure) skips the cryptography, as for ``mesh_sig``.
    """
    stamp = parse_stamp(envelope.extra)
    if stamp is None:
        return None
    if envelope.kind != KIND_EVENT:
        raise ReplayNotAllowed(f"only events are replayed, this is a {envelope.kind}")
    if keyring is None:
        return stamp
    key = verify_countersignature(envelope, topic, stamp, keyring)
    if not may_replay(key.service, topic):
        raise ReplayNotAllowed(
            f"key {key.key_id} belongs to {key.service!r}, which may not replay onto {topic}")
    return stamp


def verify_countersignature(envelope: Envelope, topic: str, stamp: ReplayStamp,
                            keyring: KeyRing) -> VerifyKey:
    """The key that made ``stamp``'s signature, or ``BadReplayCountersignature``."""
    try:
        header = parse_signature(stamp.signature)
        key = keyring.get(header.key_id)
    except (SignatureError, UnknownKeyId) as exc:
        raise BadReplayCountersignature(f"{H_REPLAY_SIG}: {exc.message}") from exc
    if header.algorithm != key.algorithm:  # the key decides the algorithm, never the header
        raise BadReplayCountersignature(
            f"key {key.key_id} is {key.algorithm}, the countersignature claims {header.algorithm}")
    message = countersign_bytes(envelope, topic, stamp.replay_id, stamp.time_ms)
    if not signature_valid(key, message, header.signature):
        raise BadReplayCountersignature(
            f"countersignature by key {key.key_id} does not match the record")
    return key

