"""Consumer-side, non-blocking retries through retry topics (Uber's and Spring Kafka's design).

A message that fails on ``<topic>`` is republished to ``<topic>.retry.1``, then
``<topic>.retry.2`` ... (one topic per delay of the ``RetryTopicPolicy``), and finally to the
dead-letter topic ``<topic>.dlt``. The main consumer never blocks on a failing message; each
retry consumer waits until a record's ``mesh_not_before`` before handling it. Every record
of a retry topic has the same delay, so records are due in the order they sit in the topic.

Pure: names, routing decisions and the headers that carry them. The stage of a record
comes from the topic it was read from (not from ``mesh_attempt``, which also counts the
caller's own retries and is not signed).

Signing: ``bus.security.signing`` signs the main topic and leaves ``mesh_attempt`` and extra headers
out, so a republished record keeps its original ``mesh_sig``. A retry consumer verifies a
record against ``RetryTopics.main_topic`` (known from the topic it reads), never against
the unsigned ``mesh_original_topic`` header.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from bus.envelope import Envelope, Headers, to_headers
from bus.errors import EnvelopeError, HandlerError, MeshError, RemoteError, is_retriable

H_NOT_BEFORE = "mesh_not_before"
"""Epoch ms before which a retry consumer must not handle the record."""
H_ORIGINAL_TOPIC = "mesh_original_topic"
"""The main topic the message was first sent to (where a replay goes)."""
H_ERROR_CODE = "mesh_error_code"
"""Code of the latest failure (``HandlerError.error_code``, ``MeshError.code``, ...)."""
H_ERROR_MESSAGE = "mesh_error_message"
"""Message of the latest failure, at most ``MAX_ERROR_MESSAGE_BYTES`` of UTF-8."""
H_FAILED_AT = "mesh_failed_at"
"""Epoch ms of the latest failure."""
H_DLT_REASON = "mesh_dlt_reason"
"""On dead letters only: why the message was given up (``REASON_*``)."""
H_REPLAY_OF = "mesh_replay_of"
"""On a message replayed from a dead-letter topic: the id of the dead message."""

FAILURE_HEADERS = frozenset(
    {H_NOT_BEFORE, H_ORIGINAL_TOPIC, H_ERROR_CODE, H_ERROR_MESSAGE, H_FAILED_AT, H_DLT_REASON}
)

REASON_NOT_RETRIABLE = "not_retriable"
REASON_EXHAUSTED = "retries_exhausted"
REASON_DEADLINE = "deadline_exceeded"

RETRY_INFIX = ".retry."
DLT_SUFFIX = ".dlt"
MAX_ERROR_CODE_BYTES = 200
MAX_ERROR_MESSAGE_BYTES = 1024
INTERNAL_ERROR_CODE = "internal"


class UnknownRetryStage(MeshError):
    """A failure was routed from a topic that is neither the main topic nor one of its retry
    topics (a dead-letter topic included: nothing is retried from there)."""

    code = "unknown_retry_stage"


def retry_topic_name(main_topic: str, stage: int) -> str:
    """``<main_topic>.retry.<stage>``, stages numbered from 1."""
    if stage < 1:
        raise ValueError(f"retry stages are numbered from 1, got {stage}")
    return f"{main_topic}{RETRY_INFIX}{stage}"


def dlt_topic_name(main_topic: str) -> str:
    return f"{main_topic}{DLT_SUFFIX}"


@dataclass(frozen=True)
class RetryTopicPolicy:
    """The delay of each retry stage, in ms: ``(1000, 10000, 60000)`` makes three retry
    topics. No delays means a failure goes straight to the dead-letter topic."""

    delays_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        delays = tuple(self.delays_ms)
        for delay in delays:
            if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
                raise ValueError(f"retry delays are integer ms >= 0, got {delay!r}")
        object.__setattr__(self, "delays_ms", delays)

    @classmethod
    def of_seconds(cls, *delays_s: float) -> RetryTopicPolicy:
        return cls(tuple(round(delay * 1000) for delay in delays_s))

    @property
    def stages(self) -> int:
        return len(self.delays_ms)


@dataclass(frozen=True)
class RetryHop:
    """Republish to ``topic`` (retry stage ``stage``) with ``mesh_attempt = attempt``; it must
    not be handled before ``not_before_ms``."""

    topic: str
    stage: int
    attempt: int
    not_before_ms: int


@dataclass(frozen=True)
class DeadLetterHop:
    """Give up: publish to the dead-letter ``topic``; ``attempt`` is the attempts made."""

    topic: str
    attempt: int
    reason: str


Hop = RetryHop | DeadLetterHop


@dataclass(frozen=True)
class RetryTopics:
    """The retry and dead-letter topics of one main topic, and the routing between them."""

    main_topic: str
    policy: RetryTopicPolicy
    retry_topics: tuple[str, ...] = field(init=False)
    dlt_topic: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.main_topic:
            raise ValueError("the main topic needs a name")
        retries = tuple(
            retry_topic_name(self.main_topic, stage) for stage in range(1, self.policy.stages + 1)
        )
        object.__setattr__(self, "retry_topics", retries)
        object.__setattr__(self, "dlt_topic", dlt_topic_name(self.main_topic))

    def all_topics(self) -> tuple[str, ...]:
        """The topics to provision besides the main one: retry stages, then the DLT."""
        return (*self.retry_topics, self.dlt_topic)

    def stage_of(self, topic: str) -> int:
        """0 for the main topic, ``n`` for ``<main>.retry.<n>``; ``UnknownRetryStage`` else."""
        if topic == self.main_topic:
            return 0
        try:
            return self.retry_topics.index(topic) + 1
        except ValueError:
            raise UnknownRetryStage(
                f"{topic!r} is not {self.main_topic!r} nor one of its retry topics"
            ) from None

    def delay_ms_of(self, topic: str) -> int:
        """The delay of the retry topic ``topic`` (0 for the main topic)."""
        stage = self.stage_of(topic)
        return 0 if stage == 0 else self.policy.delays_ms[stage - 1]

    def next_hop(
        self,
        topic_of_record: str,
        attempt: int,
        failure_retriable: bool,
        *,
        now_ms: int,
        deadline_ms: int | None = None,
    ) -> Hop:
        """Where a message that just failed its attempt ``attempt`` on ``topic_of_record``
        goes next: the next retry stage, or the DLT when the failure is not retriable, the
        stages are used up, or the retry would not be due before ``deadline_ms``."""
        if attempt < 1:
            raise ValueError(f"attempts are numbered from 1, got {attempt}")
        stage = self.stage_of(topic_of_record)
        if not failure_retriable:
            return DeadLetterHop(self.dlt_topic, attempt, REASON_NOT_RETRIABLE)
        if stage >= self.policy.stages:
            return DeadLetterHop(self.dlt_topic, attempt, REASON_EXHAUSTED)
        not_before_ms = now_ms + self.policy.delays_ms[stage]
        if deadline_ms is not None and not_before_ms >= deadline_ms:
            return DeadLetterHop(self.dlt_topic, attempt, REASON_DEADLINE)
        return RetryHop(self.retry_topics[stage], stage + 1, attempt + 1, not_before_ms)


@dataclass(frozen=True)
class Failure:
    """What went wrong, as it travels in the headers."""

    code: str
    message: str
    retriable: bool

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        """Describe ``error``: the typed code of mesh errors, ``internal`` for anything else."""
        if isinstance(error, RemoteError):
            code = error.remote_code
        elif isinstance(error, HandlerError):
            code = error.error_code
        elif isinstance(error, MeshError):
            code = error.code
        else:
            code = INTERNAL_ERROR_CODE
        if isinstance(error, MeshError):
            message = error.message
        else:
            message = f"{type(error).__name__}: {error}"
        return cls(code, message, is_retriable(error))


@dataclass(frozen=True)
class FailureHeaders:
    """The failure headers of a retry or dead-letter record, parsed."""

    original_topic: str
    error_code: str
    error_message: str
    failed_at_ms: int
    not_before_ms: int | None = None
    dlt_reason: str | None = None


def _truncate(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def failure_extra(info: FailureHeaders) -> tuple[tuple[str, bytes], ...]:
    """``info`` as ``Envelope.extra`` entries (code and message truncated to their limits)."""
    entries: list[tuple[str, str]] = [
        (H_ORIGINAL_TOPIC, info.original_topic),
        (H_ERROR_CODE, _truncate(info.error_code, MAX_ERROR_CODE_BYTES)),
        (H_ERROR_MESSAGE, _truncate(info.error_message, MAX_ERROR_MESSAGE_BYTES)),
        (H_FAILED_AT, str(info.failed_at_ms)),
    ]
    if info.not_before_ms is not None:
        entries.append((H_NOT_BEFORE, str(info.not_before_ms)))
    if info.dlt_reason is not None:
        entries.append((H_DLT_REASON, info.dlt_reason))
    return tuple((name, text.encode("utf-8")) for name, text in entries)


def without_failure_headers(
    extra: Iterable[tuple[str, bytes]],
) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, raw) for name, raw in extra if name not in FAILURE_HEADERS)


def _failure_texts(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, raw in headers:
        if name not in FAILURE_HEADERS:
            continue
        if name in found:
            raise EnvelopeError(f"header {name} appears twice")
        if not isinstance(raw, bytes):
            raise EnvelopeError(f"header {name} has no bytes value")
        try:
            found[name] = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"header {name} is not UTF-8") from exc
    return found


def _epoch_ms(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise EnvelopeError(f"header {name} must be epoch ms, got {text!r}")
    return int(text)


def parse_failure_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> FailureHeaders | None:
    """The failure headers of a record; None when it has none (a first delivery).

    Raises ``EnvelopeError`` when some are present but one is missing, repeated or malformed.
    """
    texts = _failure_texts(headers)
    if not texts:
        return None
    missing = [
        name for name in (H_ORIGINAL_TOPIC, H_ERROR_CODE, H_FAILED_AT) if not texts.get(name)
    ]
    if missing:
        raise EnvelopeError(f"missing failure headers: {', '.join(missing)}")
    not_before = texts.get(H_NOT_BEFORE)
    return FailureHeaders(
        original_topic=texts[H_ORIGINAL_TOPIC],
        error_code=texts[H_ERROR_CODE],
        error_message=texts.get(H_ERROR_MESSAGE, ""),
        failed_at_ms=_epoch_ms(H_FAILED_AT, texts[H_FAILED_AT]),
        not_before_ms=None if not_before is None else _epoch_ms(H_NOT_BEFORE, not_before),
        dlt_reason=texts.get(H_DLT_REASON) or None,
    )


def hop_envelope(
    envelope: Envelope,
    hop: Hop,
    *,
    original_topic: str,
    failure: Failure,
    failed_at_ms: int,
) -> Envelope:
    """``envelope`` as republished for ``hop``: the hop's ``mesh_attempt`` and fresh failure
    headers (replacing any earlier ones). Everything signed is unchanged, signature included.
    """
    info = FailureHeaders(
        original_topic=original_topic,
        error_code=failure.code,
        error_message=failure.message,
        failed_at_ms=failed_at_ms,
        not_before_ms=hop.not_before_ms if isinstance(hop, RetryHop) else None,
        dlt_reason=hop.reason if isinstance(hop, DeadLetterHop) else None,
    )
    extra = (*without_failure_headers(envelope.extra), *failure_extra(info))
    return replace(envelope, attempt=hop.attempt, extra=extra)


def hop_headers(
    envelope: Envelope,
    hop: Hop,
    *,
    original_topic: str,
    failure: Failure,
    failed_at_ms: int,
) -> Headers:
    """The full record headers for republishing ``envelope`` to ``hop.topic``."""
    return to_headers(
        hop_envelope(
            envelope, hop, original_topic=original_topic, failure=failure,
            failed_at_ms=failed_at_ms,
        )
    )


def wait_ms(
    record_headers: Sequence[tuple[str, bytes | None]],
    now_ms: int,
    *,
    max_wait_ms: int | None = None,
) -> int:
    """How long a retry consumer must wait before handling a record: 0 when it is due.

    A record without a readable ``mesh_not_before`` is due at once (it is not held up by a
    bad header; handling will judge it). ``max_wait_ms`` caps the answer, e.g. at the retry
    topic's delay, so a far-future header (clock skew, a bad producer) cannot stall a
    partition.
    """
    raw: bytes | None = None
    for name, value in record_headers:
        if name == H_NOT_BEFORE:
            raw = value
    if raw is None:
        return 0
    try:
        not_before = _epoch_ms(H_NOT_BEFORE, raw.decode("utf-8"))
    except (UnicodeDecodeError, EnvelopeError):
        return 0
    wait = max(0, not_before - now_ms)
    return wait if max_wait_ms is None else min(wait, max(0, max_wait_ms))
