"""What ``meshgate tail`` shows, as pure logic: each record decoded and its signature checked
against the keyring, then requests matched with their replies by correlation id into calls.
A reply pairs with its call only if a caller would take it: signed (when the request is), and
accepted by ``bus.security.reply_match`` (from the operation's owner, as that operation). Any other
reply to a pending call is shown at once as ``HIJACK`` (or ``rejected`` for a bad signature),
with the reason, and the call keeps waiting for its genuine answer.

No I/O here: the Kafka side is ``infra.cli.tail.reader``, the printing ``infra.cli.tail.render``.
Memory is bounded: at most ``max_pending`` unanswered requests are kept (the oldest are
dropped and counted), and at most ``max_done`` answered correlation ids are remembered to
recognise duplicate replies (an idempotent service answers a retry with the stored reply).
"""

from __future__ import annotations

import fnmatch
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from bus.envelope import KIND_ERROR, KIND_REPLY, KIND_REQUEST, Envelope, from_record
from bus.errors import EnvelopeError, MeshError
from bus.security.keys import KeyRing
from bus.security.pair_mac import NotForThisService, PairKeys
from bus.security.reply_match import Expected, refusal
from bus.security.signing import verify
from bus.topics import BadOperationName

Signature = Literal["verified", "FORGED", "unsigned", "sealed"]
VERIFIED: Final = "verified"
FORGED: Final = "FORGED"
UNSIGNED: Final = "unsigned"
# A per-pair MAC whose receiver's secret the operator did not load: only that receiver can
# say whether it is genuine (bus.security.pair_mac).
SEALED: Final = "sealed"
# Worst first: a call shows the worst signature among its records.
_RANK: Final[dict[str, int]] = {FORGED: 0, UNSIGNED: 1, SEALED: 2, VERIFIED: 3}

OK: Final = "ok"
TIMEOUT: Final = "timeout"
REJECTED: Final = "rejected"  # a request receivers refuse (bad or no signature): no reply comes
MALFORMED: Final = "malformed"  # not a mesh envelope at all
HIJACK: Final = "HIJACK"  # a signed reply to a call from someone who may not answer it
MAX_EARLY_PER_CALL: Final = 8
NO_DEADLINE_WAIT_MS: Final = 60_000


_NO_PAIR_KEYS: Final = PairKeys([])


@dataclass(frozen=True)
class Seen:
    """One record as read: where, when, and what it is (``envelope`` None if undecodable)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    envelope: Envelope | None
    signature: Signature
    signature_problem: str | None = None  # the verify error's code when FORGED
    parse_error: str | None = None


def check_signature(envelope: Envelope, topic: str, keyring: KeyRing,
                    pair: PairKeys | None = None) -> tuple[Signature, str | None]:
    """``verified``, ``unsigned``, or ``FORGED`` with the reason (``bad_signature``,
    ``unknown_key_id``, ``sender_mismatch``, ``malformed_signature``); a per-pair MAC is
    checked with its receiver's key from ``pair`` (the operator's copy of the receivers'
    secrets), and is ``sealed`` when that key was not loaded."""
    if envelope.signature is None:
        return UNSIGNED, None
    try:
        verify(envelope, topic, keyring, pair or _NO_PAIR_KEYS)
    except NotForThisService:
        return SEALED, None
    except MeshError as exc:
        return FORGED, exc.code
    return VERIFIED, None


def decode(topic: str, partition: int, offset: int, timestamp_ms: int,
           headers: Sequence[tuple[str, bytes | None]], value: bytes | None,
           keyring: KeyRing, pair: PairKeys | None = None) -> Seen:
    """A record as ``Seen``: never raises on what the record holds."""
    try:
        envelope = from_record(headers, value)
    except EnvelopeError as exc:
        return Seen(topic, partition, offset, timestamp_ms, None, UNSIGNED,
                    parse_error=str(exc))
    signature, problem = check_signature(envelope, topic, keyring, pair)
    return Seen(topic, partition, offset, timestamp_ms, envelope, signature, problem)


@dataclass(frozen=True)
class Call:
    """One call as seen on the mesh: its request and (if it came) its reply."""

    at_ms: int
    operation: str
    caller: str | None
    callee: str | None
    latency_ms: int | None
    result: str
    signature: Signature
    principal: str | None = None
    trace_id: str | None = None
    correlation_id: str | None = None
    attempts: int = 1
    detail: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "time_ms": self.at_ms, "operation": self.operation, "caller": self.caller,
            "callee": self.callee, "latency_ms": self.latency_ms, "result": self.result,
            "signature": self.signature, "principal": self.principal,
            "trace_id": self.trace_id, "correlation_id": self.correlation_id,
            "attempts": self.attempts, "detail": self.detail,
        }


def worst(*signatures: Signature) -> Signature:
    return min(signatures, key=lambda s: _RANK[s])


def principal_subject(text: str | None) -> str | None:
    """The ``sub`` of a ``mesh_principal`` header (compact JSON), or None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    sub = data.get("sub") if isinstance(data, dict) else None
    return sub if isinstance(sub, str) else None


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``)."""
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    return parts[1].lower()


def reply_result(reply: Envelope) -> tuple[str, str | None]:
    """``ok`` for a reply; the error's code (and message) for an error reply."""
    if reply.kind == KIND_REPLY:
        return OK, None
    try:
        body = json.loads(reply.value)
    except ValueError:
        return "error", "the error reply is not JSON"
    if not isinstance(body, dict):
        return "error", None
    code, message = body.get("code"), body.get("message")
    return (code if isinstance(code, str) and code else "error",
            message if isinstance(message, str) else None)


def reply_refusal(operation: str, reply: Envelope, owners: Mapping[str, str]
                  ) -> MeshError | None:
    """Why a caller of ``operation`` would refuse ``reply`` (by ``bus.security.reply_match``);
    None if it would take it."""
    try:
        expected = Expected.call(reply.correlation_id or "", operation,
                                 owner=owners.get(operation))
    except BadOperationName as exc:
        return exc
    return refusal(expected, reply)


@dataclass
class _Pending:
    seen: Seen
    envelope: Envelope
    attempts: int = 1


@dataclass(frozen=True)
class CallFilter:
    """``--operation GLOB``, ``--service NAME`` (caller or callee), ``--trace ID``."""

    operation: str | None = None
    service: str | None = None
    trace: str | None = None

    def accepts(self, call: Call) -> bool:
        if self.operation is not None and not fnmatch.fnmatchcase(call.operation,
                                                                  self.operation):
            return False
        if self.service is not None and self.service not in (call.caller, call.callee):
            return False
        return self.trace is None or call.trace_id == self.trace.lower()


@dataclass
class Matcher:
    """Requests in, calls out: ``feed`` each record, ``expire`` now and then for timeouts."""

    owners: Mapping[str, str] = field(default_factory=dict)  # operation -> serving service
    max_pending: int = 10_000
    max_done: int = 10_000
    grace_ms: int = 1_000
    dropped: int = 0  # unanswered requests forgotten to bound memory
    duplicates: int = 0  # further replies to an answered call
    ignored: int = 0  # events and other kinds that are not calls
    _pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)
    _done: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # Replies read before their request (partitions are fetched independently), held for
    # ``grace_ms`` in case the request follows.
    _early: OrderedDict[str, list[Seen]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.max_pending < 1 or self.max_done < 0:
            raise ValueError("max_pending must be >= 1 and max_done >= 0")

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, seen: Seen) -> list[Call]:
        envelope = seen.envelope
        if envelope is None:
            return [Call(seen.timestamp_ms, "?", None, None, None, MALFORMED, seen.signature,
                         detail=f"{seen.topic}:{seen.partition}@{seen.offset}: "
                                f"{seen.parse_error}")]
        if envelope.kind == KIND_REQUEST:
            return self._request(seen, envelope)
        if envelope.kind in (KIND_REPLY, KIND_ERROR):
            return self._reply(seen, envelope)
        self.ignored += 1
        return []

    def _request(self, seen: Seen, envelope: Envelope) -> list[Call]:
        correlation = envelope.correlation_id or envelope.id
        if seen.signature not in (VERIFIED, SEALED):  # receivers park it: no reply comes
            return [Call(envelope.time_ms, envelope.type, envelope.source,
                         self.owners.get(envelope.type), None, REJECTED, seen.signature,
                         principal_subject(envelope.principal), trace_id(envelope.traceparent),
                         correlation, detail=seen.signature_problem or "no signature")]
        known = self._pending.get(correlation)
        if known is not None:  # a retry: same call, one more attempt
            known.attempts += 1
            return []
        self._pending[correlation] = _Pending(seen, envelope)
        if len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.dropped += 1
        return [call for early in self._early.pop(correlation, []) for call in self.feed(early)]

    def _reply(self, seen: Seen, reply: Envelope) -> list[Call]:
        correlation = reply.correlation_id or ""
        result, message = reply_result(reply)
        pending = self._pending.get(correlation)
        if pending is None:
            if correlation in self._done:
                self.duplicates += 1
            else:
                early = self._early.setdefault(correlation, [])
                if len(early) < MAX_EARLY_PER_CALL:
                    early.append(seen)
                if len(self._early) > self.max_pending:
                    self._early.popitem(last=False)
                    self.dropped += 1
            return []
        refused = self._refused(pending, seen, reply)
        if refused is not None:
            return [refused]  # the call keeps waiting for its genuine answer
        del self._pending[correlation]
        self._remember(correlation)
        request = pending.envelope
        return [Call(request.time_ms, request.type, request.source, reply.source,
                     max(0, reply.time_ms - request.time_ms), result,
                     worst(pending.seen.signature, seen.signature),
                     principal_subject(request.principal), trace_id(request.traceparent),
                     correlation, pending.attempts,
                     detail=_join(seen.signature_problem, message))]

    def _refused(self, pending: _Pending, seen: Seen, reply: Envelope) -> Call | None:
        """The line for a reply the caller would refuse (it does not end the call)."""
        request = pending.envelope
        result, problem = REJECTED, seen.signature_problem
        if seen.signature == UNSIGNED and pending.seen.signature in (VERIFIED, SEALED):
            problem = "missing_signature"
        elif seen.signature != FORGED:
            refused = reply_refusal(request.type, reply, self.owners)
            if refused is None:
                return None
            result, problem = HIJACK, f"{refused.code}: {refused}"
        return Call(reply.time_ms, request.type, request.source, reply.source,
                    max(0, reply.time_ms - request.time_ms), result,
                    worst(pending.seen.signature, seen.signature),
                    principal_subject(request.principal), trace_id(request.traceparent),
                    reply.correlation_id, pending.attempts, detail=problem)

    def _orphan(self, seen: Seen) -> Call:
        """A reply whose request came before we started reading (or was dropped)."""
        reply = seen.envelope
        assert reply is not None
        result, message = reply_result(reply)
        refused = reply_refusal(reply.type, reply, self.owners)
        if refused is not None and seen.signature == VERIFIED:
            result, message = HIJACK, f"{refused.code}: {refused}"
        return Call(reply.time_ms, reply.type, None, reply.source, None, result,
                    seen.signature, None, trace_id(reply.traceparent), reply.correlation_id,
                    detail=_join(seen.signature_problem, message))

    def expire(self, now_ms: int) -> list[Call]:
        """Calls whose deadline (plus a grace for the reply in flight) has passed, and
        replies that waited ``grace_ms`` for a request that never came."""
        calls: list[Call] = []
        for correlation, early in list(self._early.items()):
            first = early[0].envelope
            assert first is not None
            if now_ms >= first.time_ms + self.grace_ms:
                del self._early[correlation]
                self._remember(correlation)
                calls.extend(self._orphan(seen) for seen in early)
        for correlation, pending in list(self._pending.items()):
            request = pending.envelope
            deadline = (request.deadline_ms if request.deadline_ms is not None
                        else request.time_ms + NO_DEADLINE_WAIT_MS)
            if now_ms < deadline + self.grace_ms:
                continue
            del self._pending[correlation]
            self._remember(correlation)
            calls.append(Call(request.time_ms, request.type, request.source,
                              self.owners.get(request.type), None, TIMEOUT,
                              pending.seen.signature, principal_subject(request.principal),
                              trace_id(request.traceparent), correlation, pending.attempts,
                              detail=f"no reply within {deadline - request.time_ms} ms"))
        return calls

    def _remember(self, correlation: str) -> None:
        if self.max_done == 0:
            return
        self._done[correlation] = None
        self._done.move_to_end(correlation)
        while len(self._done) > self.max_done:
            self._done.popitem(last=False)


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None
