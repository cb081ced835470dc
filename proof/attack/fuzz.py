"""Hypothesis-generated hostile records (seeded), and the fuzzer over the envelope parser
(pure: no I/O).

``random_record`` is noise shaped like a Kafka record (known and unknown header names, any
bytes, null values); ``mutant`` is a genuinely signed record with a few edits (headers dropped,
duplicated, replaced, bit-flipped, added, reordered; the value changed). The fuzzer checks
that ``from_record`` raises nothing but ``EnvelopeError`` and that full admission (signature,
sender, access, freshness, replay) refuses every input: the genuine original was delivered
first, so even an edit that changes no signed byte is refused, as a replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bus.envelope import (
    H_ATTEMPT,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_DEADLINE,
    H_ID,
    H_KIND,
    H_PRINCIPAL,
    H_REPLY_TO,
    H_SIGNATURE,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TRACESTATE,
    H_TYPE,
    MAX_HEADER_VALUE,
    from_record,
    to_headers,
)
from bus.errors import EnvelopeError, MeshError
from bus.security.inbound import InboundGuard
from bus.security.replay import ReplayGuard
from bus.transport import Record
from proof.attack.accounting import Outcome
from proof.attack.cast import cast as make_cast
from proof.attack.mesh_cases import Builder, RawHeaders

T = TypeVar("T")
PARSER_FUZZ = "parser_fuzz"
Raw = tuple[RawHeaders, bytes | None]

KNOWN_NAMES = (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME, H_CORRELATION, H_REPLY_TO,
               H_DEADLINE, H_ATTEMPT, H_KIND, H_TRACEPARENT, H_TRACESTATE, H_SIGNATURE,
               H_CONTENT_TYPE, H_PRINCIPAL)
INTERESTING = (b"", b"1.0", b"2026-01-01T00:00:00.000Z", b"2026-02-30T00:00:00.000Z",
               b"request", b"reply", b"error", b"event", b"mesh.replies:0", b":0",
               b"mesh.replies:-1", b"-1", b"0", b"99999999999999999999", b"\xff\xfe", b"\x00",
               b"1" * (MAX_HEADER_VALUE + 1), b"ed25519:k:AAAA", b"hmac-sha256::", "²".encode())

names = st.one_of(st.sampled_from(KNOWN_NAMES), st.text(max_size=16))
header_values = st.one_of(
    st.binary(max_size=48), st.text(max_size=32).map(str.encode), st.sampled_from(INTERESTING),
    st.integers().map(lambda n: str(n).encode()), st.none())
random_record = st.tuples(st.lists(st.tuples(names, header_values), max_size=16),
                          st.one_of(st.none(), st.binary(max_size=256)))


@st.composite
def mutant(draw: st.DrawFn, headers: RawHeaders, value: bytes) -> Raw:
    edited = list(headers)
    for op in draw(st.lists(st.sampled_from(
            ("drop", "duplicate", "replace", "flip", "add", "swap", "value")), min_size=1,
            max_size=3)):
        if op == "value":
            value = draw(st.one_of(st.binary(max_size=64), st.just(value + b" ")))
            continue
        if op == "add" or not edited:
            edited.append((draw(names), draw(header_values)))
            continue
        i = draw(st.integers(0, len(edited) - 1))
        name, raw = edited[i]
        if op == "drop":
            del edited[i]
        elif op == "duplicate":
            edited.append((name, draw(st.one_of(st.just(raw), header_values))))
        elif op == "replace":
            edited[i] = (name, draw(header_values))
        elif op == "flip" and raw:
            at, bit = draw(st.integers(0, len(raw) - 1)), draw(st.integers(0, 7))
            edited[i] = (name, raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1:])
        elif op == "swap":
            j = draw(st.integers(0, len(edited) - 1))
            edited[i], edited[j] = edited[j], edited[i]
    return edited, value


def collect(strategy: st.SearchStrategy[T], count: int, at_seed: int) -> list[T]:
    """``count`` examples of ``strategy`` (fewer if hypothesis exhausts it), reproducible from
    ``at_seed``: generation only, no shrinking, no example database."""
    found: list[T] = []

    @seed(at_seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(example: T) -> None:
        found.append(example)

    draw()
    return found


def _record(topic: str, raw: Raw, offset: int) -> Record:
    """As the broker would hand it out: every record written gets its own offset (a copy
    of a message at the original's offset would be a redelivery, not an attack)."""
    headers, value = raw
    return Record(topic, 0, offset, value, headers=cast(Sequence[tuple[str, bytes]], headers))


def judge(guard: InboundGuard, topic: str, raw: Raw, now_ms: int, label: str,
          offset: int) -> Outcome:
    """Parse (only ``EnvelopeError`` may come out), then admit; refused unless admitted."""
    headers, value = raw
    try:
        from_record(headers, value)
    except EnvelopeError:
        parsed = False
    except Exception as exc:
        return Outcome(PARSER_FUZZ, label, False, 0, f"parser crash: {type(exc).__name__}")
    else:
        parsed = True
    try:
        guard.admit(_record(topic, raw, offset), now_ms)
    except MeshError as exc:
        where = "after parsing" if parsed else "by the parser"
        return Outcome(PARSER_FUZZ, label, True, 0, f"{exc.code} ({where})")
    except Exception as exc:
        return Outcome(PARSER_FUZZ, label, False, 0, f"admission crash: {type(exc).__name__}")
    return Outcome(PARSER_FUZZ, label, False, 1, "admitted")


def fuzz_parser(count: int, at_seed: int, now_ms: int) -> list[Outcome]:
    """``count`` generated inputs (half noise, half mutants of one genuine record)."""
    actors = make_cast("atk-fuzz")
    builder = Builder(actors, now_ms)
    original = builder.signed()
    guard = InboundGuard(keyring=actors.victim.keyring, access=actors.victim.access,
                         replay=ReplayGuard(300_000, 100_000), window_ms=300_000,
                         max_value_bytes=64 * 1024)
    headers: RawHeaders = list(to_headers(original))
    guard.admit(_record(builder.topic, (headers, original.value), 0), now_ms)  # the delivery
    strategy: st.SearchStrategy[Any] = st.one_of(random_record, mutant(headers, original.value))
    inputs = collect(strategy, count, at_seed)
    return [judge(guard, builder.topic, raw, now_ms, f"fuzz #{n}", n + 1)
            for n, raw in enumerate(inputs)]
