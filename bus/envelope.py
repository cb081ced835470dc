"""The mesh envelope: a CloudEvents 1.0 event in the Kafka protocol binding's binary mode.

The value is the event's data as-is; ``content-type`` is its ``datacontenttype``; the
CloudEvents attributes are ``ce_specversion`` (``1.0``), ``ce_id``, ``ce_source``, ``ce_type``
and ``ce_time`` (RFC 3339, ``bus.wire_time``); the mesh's own headers (``mesh_*``,
``traceparent``) are plain Kafka headers, which the binding allows. docs/wire-format.md is the
full contract. Pure functions only: building headers from an ``Envelope`` and parsing them
back. Parsing never raises anything but ``EnvelopeError``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from bus import wire_time
from bus.errors import EnvelopeError

Headers = list[tuple[str, bytes]]
# ASCII only: str.isdigit() is true for characters such as '²' that int() refuses.
_DIGITS = re.compile(r"[0-9]{1,19}")
# The signed integers have one spelling each (no leading zero, no "-0"): the signature covers
# the text as sent, so no respelled copy of a record verifies (docs/wire-format.md §2).
_NATURAL = re.compile(r"0|[1-9][0-9]{0,18}")
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,18}")

H_SPECVERSION = "ce_specversion"
SPECVERSION = "1.0"
H_ID = "ce_id"
H_SOURCE = "ce_source"
H_TYPE = "ce_type"
H_TIME = "ce_time"
H_CORRELATION = "mesh_correlation_id"
H_REPLY_TO = "mesh_reply_to"
H_DEADLINE = "mesh_deadline"
H_ATTEMPT = "mesh_attempt"
H_KIND = "mesh_kind"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
H_SIGNATURE = "mesh_sig"
H_CONTENT_TYPE = "content-type"
# Who the call is made for (the edge's authenticated caller), as compact JSON; signed, so a
# service can authorize on it. Nested calls inherit it.
H_PRINCIPAL = "mesh_principal"
# An edge's signed assertion of that principal (bus.security.principals): lets a service that is not
# an edge forward the principal of the message it handles, unchanged, to a receiver that never
# saw the edge's message. Signed with the message too.
H_PRINCIPAL_SIG = "mesh_principal_sig"
# An operator's replay of a dead letter (bus.security.replay_countersign): the original record,
# unchanged and still carrying its own mesh_sig, plus the operator's countersignature over it. Not
# parsed into Envelope fields: they travel in ``extra`` and admission verifies them.
H_REPLAY_ID = "mesh_replay_id"
H_REPLAY_TIME = "mesh_replay_time"
H_REPLAY_SIG = "mesh_replay_sig"

KIND_REQUEST = "request"
KIND_REPLY = "reply"
KIND_ERROR = "error"
KIND_EVENT = "event"
KINDS = frozenset({KIND_REQUEST, KIND_REPLY, KIND_ERROR, KIND_EVENT})

REQUIRED = (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_KIND)
MAX_HEADER_VALUE = 4096


class OldWireFormat(EnvelopeError):
    """A record of the wire format before CloudEvents conformance (signature domain
    meshgate-sig-v3: epoch-millisecond ``ce_time``, no ``ce_specversion``): its sender runs an
    older meshgate. Refused, never converted: its signature cannot verify as v4."""

    code = "old_wire_format"


@dataclass(frozen=True)
class ReplyTo:
    """Where a reply goes: a topic and the partition the caller listens on."""

    topic: str
    partition: int

    def encode(self) -> str:
        return f"{self.topic}:{self.partition}"

    @classmethod
    def decode(cls, text: str) -> ReplyTo:
        return _reply_to(text) if cls is ReplyTo else cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> ReplyTo:
        topic, sep, partition = text.rpartition(":")
        if not sep or not topic or not _NATURAL.fullmatch(partition):
            raise EnvelopeError(f"{H_REPLY_TO} must be 'topic:partition', got {text!r}")
        return cls(topic, int(partition))


# A service's requests name a few reply partitions over and over: parse each text once
# (frozen values, so sharing them is safe; refusals raise and are not cached).
@lru_cache(maxsize=256)
def _reply_to(text: str) -> ReplyTo:
    return ReplyTo._parse(text)


@dataclass(frozen=True, init=False)
class Envelope:
    """One mesh message: the contract headers plus the value bytes.

    Frozen, with a hand-written ``__init__`` that fills the instance dict directly: the
    generated one of a frozen dataclass calls ``object.__setattr__`` once per field (4.4 us
    per envelope, 0.9 us this way), and a request/reply builds about ten envelopes. Its
    parameters are the fields in order, with their defaults (a unit test holds them equal).
    """

    id: str
    source: str
    type: str
    kind: str
    value: bytes
    time_ms: int
    correlation_id: str | None = None
    reply_to: ReplyTo | None = None
    deadline_ms: int | None = None
    attempt: int = 1
    traceparent: str | None = None
    tracestate: str | None = None
    signature: str | None = None
    content_type: str = "application/json"
    principal: str | None = None
    principal_assertion: str | None = None
    extra: tuple[tuple[str, bytes], ...] = field(default=())

    def remaining_ms(self, now_ms: int) -> int | None:
        """Milliseconds left before the deadline, or None when the message has none."""
        return None if self.deadline_ms is None else self.deadline_ms - now_ms

    def expired(self, now_ms: int) -> bool:
        return self.deadline_ms is not None and now_ms >= self.deadline_ms

    def __init__(
        self,
        id: str,
        source: str,
        type: str,
        kind: str,
        value: bytes,
        time_ms: int,
        correlation_id: str | None = None,
        reply_to: ReplyTo | None = None,
        deadline_ms: int | None = None,
        attempt: int = 1,
        traceparent: str | None = None,
        tracestate: str | None = None,
        signature: str | None = None,
        content_type: str = "application/json",
        principal: str | None = None,
        principal_assertion: str | None = None,
        extra: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        self.__dict__.update(
            id=id, source=source, type=type, kind=kind, value=value, time_ms=time_ms,
            correlation_id=correlation_id, reply_to=reply_to, deadline_ms=deadline_ms,
            attempt=attempt, traceparent=traceparent, tracestate=tracestate,
            signature=signature, content_type=content_type, principal=principal,
            principal_assertion=principal_assertion, extra=extra,
        )

    def _with(self, **changes: object) -> Envelope:
        """A copy with ``changes`` (field names only: callers below), without
        ``dataclasses.replace``'s per-field introspection."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def with_signature(self, signature: str) -> Envelope:
        return self._with(signature=signature)

    def with_id(self, message_id: str) -> Envelope:
        return self._with(id=message_id)

    def with_time(self, time_ms: int) -> Envelope:
        return self if time_ms == self.time_ms else self._with(time_ms=time_ms)

    def with_trace(self, traceparent: str | None, tracestate: str | None) -> Envelope:
        """This envelope carrying ``traceparent``/``tracestate`` (itself when it already
        does: the usual case for a reply, whose trace is its request's)."""
        if traceparent == self.traceparent and tracestate == self.tracestate:
            return self
        return self._with(traceparent=traceparent, tracestate=tracestate)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A random UUID4 as 32 lowercase hex digits (``uuid.uuid4().hex``, without building a
    ``UUID``: 0.7 us instead of 2.3)."""
    bits = int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET
    return f"{bits:032x}"


# RFC 4122 version 4: the version nibble 0100 and the variant bits 10.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request(
    *,
    source: str,
    operation: str,
    value: bytes,
    reply_to: ReplyTo,
    deadline_ms: int,
    traceparent: str | None = None,
    at_ms: int | None = None,
    correlation_id: str | None = None,
    attempt: int = 1,
    principal: str | None = None,
    principal_assertion: str | None = None,
    message_id: str | None = None,
) -> Envelope:
    """A request; retries of one call share its ``correlation_id`` and get a new id each
    (``message_id``: this one's, by default a new one)."""
    if message_id is None:
        message_id = new_id()
    return Envelope(
        id=message_id,
        source=source,
        type=operation,
        kind=KIND_REQUEST,
        value=value,
        time_ms=now_ms() if at_ms is None else at_ms,
        correlation_id=correlation_id or message_id,
        reply_to=reply_to,
        deadline_ms=deadline_ms,
        attempt=attempt,
        traceparent=traceparent,
        principal=principal,
        principal_assertion=principal_assertion,
    )


def reply_for(request: Envelope, *, source: str, value: bytes, error: bool = False) -> Envelope:
    """The reply (or error reply) to ``request``, correlated and carrying its trace."""
    return Envelope(
        id=new_id(),
        source=source,
        type=request.type,
        kind=KIND_ERROR if error else KIND_REPLY,
        value=value,
        time_ms=now_ms(),
        correlation_id=request.correlation_id or request.id,
        deadline_ms=request.deadline_ms,
        traceparent=request.traceparent,
        tracestate=request.tracestate,
    )


def to_headers(envelope: Envelope) -> Headers:
    headers: Headers = [
        (H_SPECVERSION, _SPECVERSION_BYTES),
        (H_ID, envelope.id.encode()),
        (H_SOURCE, envelope.source.encode()),
        (H_TYPE, envelope.type.encode()),
        (H_TIME, time_text(envelope.time_ms).encode()),
        (H_KIND, envelope.kind.encode()),
        (H_ATTEMPT, str(envelope.attempt).encode()),
        (H_CONTENT_TYPE, envelope.content_type.encode()),
    ]
    # The optional headers in their fixed order, each only when set.
    append = headers.append
    if envelope.correlation_id is not None:
        append((H_CORRELATION, envelope.correlation_id.encode()))
    if envelope.reply_to is not None:
        append((H_REPLY_TO, envelope.reply_to.encode().encode()))
    if envelope.deadline_ms is not None:
        append((H_DEADLINE, str(envelope.deadline_ms).encode()))
    if envelope.traceparent is not None:
        append((H_TRACEPARENT, envelope.traceparent.encode()))
    if envelope.tracestate is not None:
        append((H_TRACESTATE, envelope.tracestate.encode()))
    if envelope.signature is not None:
        append((H_SIGNATURE, envelope.signature.encode()))
    if envelope.principal is not None:
        append((H_PRINCIPAL, envelope.principal.encode()))
    if envelope.principal_assertion is not None:
        append((H_PRINCIPAL_SIG, envelope.principal_assertion.encode()))
    headers.extend(envelope.extra)
    return headers


def time_text(ms: int) -> str:
    """``ce_time`` as sent for ``ms`` (raises ``EnvelopeError`` outside years 0001-9999)."""
    try:
        return wire_time.format_ms(ms)
    except ValueError as exc:
        raise EnvelopeError(f"{H_TIME}: {exc}") from exc


def _time_ms(text: str) -> int:
    try:
        return wire_time.parse_ms(text)
    except ValueError as exc:
        raise EnvelopeError(f"{H_TIME} {exc}") from exc


def _int(name: str, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise EnvelopeError(f"header {name} must be an integer, got {text!r}")
    return int(text)


def from_record(headers: Sequence[tuple[str, bytes | None]], value: bytes | None) -> Envelope:
    """Parse a Kafka record into an Envelope; raises only ``EnvelopeError``."""
    known: dict[str, str] = {}
    extra: list[tuple[str, bytes]] = []
    for name, raw in headers:
        if not isinstance(name, str) or not isinstance(raw, bytes):
            raise EnvelopeError(f"header {name!r} has no bytes value")
        if name in _KNOWN:
            if name in known:
                raise EnvelopeError(f"header {name} appears twice")
            if len(raw) > MAX_HEADER_VALUE:
                raise EnvelopeError(f"header {name} is {len(raw)} bytes, over {MAX_HEADER_VALUE}")
            try:
                known[name] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EnvelopeError(f"header {name} is not UTF-8") from exc
        else:
            extra.append((name, raw))
    if H_SPECVERSION not in known and _DIGITS.fullmatch(known.get(H_TIME, "")):
        raise OldWireFormat(
            f"no {H_SPECVERSION} and an epoch-ms {H_TIME}: the sender speaks the pre-CloudEvents "
            "wire format (meshgate-sig-v3); deploy every service of the stack at once")
    missing = [name for name in REQUIRED if not known.get(name)]
    if missing:
        raise EnvelopeError(f"missing headers: {', '.join(missing)}")
    if known[H_SPECVERSION] != SPECVERSION:
        raise EnvelopeError(
            f"{H_SPECVERSION} must be {SPECVERSION!r}, got {known[H_SPECVERSION][:20]!r}")
    kind = known[H_KIND]
    if kind not in KINDS:
        raise EnvelopeError(f"{H_KIND} must be one of {sorted(KINDS)}, got {kind!r}")
    attempt = _int(H_ATTEMPT, known.get(H_ATTEMPT, "1"))
    if attempt < 1:
        raise EnvelopeError(f"{H_ATTEMPT} must be >= 1, got {attempt}")
    reply_to = ReplyTo.decode(known[H_REPLY_TO]) if H_REPLY_TO in known else None
    if kind == KIND_REQUEST and reply_to is None:
        raise EnvelopeError(f"a request needs {H_REPLY_TO}")
    if kind in (KIND_REPLY, KIND_ERROR) and not known.get(H_CORRELATION):
        raise EnvelopeError(f"a {kind} needs {H_CORRELATION}")
    deadline = known.get(H_DEADLINE)
    return Envelope(
        id=known[H_ID],
        source=known[H_SOURCE],
        type=known[H_TYPE],
        kind=kind,
        value=value if value is not None else b"",
        time_ms=_time_ms(known[H_TIME]),
        correlation_id=known.get(H_CORRELATION),
        reply_to=reply_to,
        deadline_ms=None if deadline is None else _int(H_DEADLINE, deadline),
        attempt=attempt,
        traceparent=known.get(H_TRACEPARENT),
        tracestate=known.get(H_TRACESTATE),
        signature=known.get(H_SIGNATURE),
        content_type=known.get(H_CONTENT_TYPE, "application/json"),
        principal=known.get(H_PRINCIPAL),
        principal_assertion=known.get(H_PRINCIPAL_SIG),
        extra=tuple(extra),
    )


_SPECVERSION_BYTES = SPECVERSION.encode()
_KNOWN = frozenset(
    {
        H_SPECVERSION,
        H_ID,
        H_SOURCE,
        H_TYPE,
        H_TIME,
        H_CORRELATION,
        H_REPLY_TO,
        H_DEADLINE,
        H_ATTEMPT,
        H_KIND,
        H_TRACEPARENT,
        H_TRACESTATE,
        H_SIGNATURE,
        H_CONTENT_TYPE,
        H_PRINCIPAL,
        H_PRINCIPAL_SIG,
    }
)
