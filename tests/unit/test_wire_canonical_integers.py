"""The signed integer headers have one spelling each (docs/wire-format.md §2): the signature
covers the header text as sent, so a copy of a genuine record with ``mesh_deadline`` or the
partition of ``mesh_reply_to`` (or an operator replay's ``mesh_replay_time``) respelled (a
leading zero, ``-0``) must not be admitted. Found
by the Java verifier (tests/interop), which signs the text as sent, as the format says, while
the parser re-formatted the parsed integer and so admitted such copies."""

from __future__ import annotations

import pytest

from bus.envelope import (
    H_ATTEMPT,
    H_DEADLINE,
    H_REPLAY_ID,
    H_REPLAY_SIG,
    H_REPLAY_TIME,
    H_REPLY_TO,
    from_record,
    to_headers,
)
from bus.errors import EnvelopeError, MeshError
from bus.security.inbound import InboundGuard
from bus.security.replay import ReplayGuard
from bus.security.replay_countersign import BadReplayCountersignature, parse_stamp
from bus.transport import Record
from proof.attack.cast import cast
from proof.attack.mesh_cases import Builder

NOW = 1_767_225_600_000


def admit(guard: InboundGuard, topic: str, headers: list[tuple[str, bytes | None]],
          value: bytes | None, offset: int) -> None:
    sent = [(name, raw) for name, raw in headers if raw is not None]
    assert len(sent) == len(headers)
    guard.admit(Record(topic, 0, offset, value, None, sent), NOW)


def test_every_respelled_copy_is_refused_and_the_genuine_record_is_admitted() -> None:
    players = cast("victim")
    builder = Builder(players, NOW)
    guard = InboundGuard(players.victim.keyring, players.victim.access,
                         ReplayGuard(300_000, 1000), 300_000, 1_000_000)
    respelled = [case for case in builder.wire_format() if "respelled" in case.label
                 and case.label.startswith("mesh_")]
    assert {case.label for case in respelled} == {
        "mesh_deadline respelled with a leading zero",
        "mesh_reply_to partition respelled with a leading zero"}
    for offset, case in enumerate(respelled):
        with pytest.raises(MeshError) as refused:
            admit(guard, builder.topic, case.headers, case.value, offset)
        assert refused.value.code == "bad_envelope", case.label
    genuine = builder.signed()  # the control: the same kind of record, spelled as sent
    admit(guard, builder.topic, list(to_headers(genuine)), genuine.value, 99)


@pytest.mark.parametrize(("name", "text"), [
    (H_DEADLINE, b"01767225610123"), (H_DEADLINE, b"-0"), (H_DEADLINE, b"+5"),
    (H_REPLY_TO, b"mesh.replies:03"), (H_ATTEMPT, b"01"), (H_ATTEMPT, b"0")])
def test_a_non_canonical_integer_is_not_an_envelope(name: str, text: bytes) -> None:
    builder = Builder(cast("victim"), NOW)
    headers = [(n, text if n == name else raw) for n, raw in to_headers(builder.signed())]
    with pytest.raises(EnvelopeError):
        from_record(headers, b"{}")


@pytest.mark.parametrize("text", [b"01767229200123", b"+1767229200123", b"-0"])
def test_a_respelled_replay_time_is_refused(text: bytes) -> None:
    stamp = [(H_REPLAY_ID, b"r-1"), (H_REPLAY_TIME, text), (H_REPLAY_SIG, b"ed25519:k:x")]
    with pytest.raises(BadReplayCountersignature):
        parse_stamp(stamp)
    assert parse_stamp([*stamp[:1], (H_REPLAY_TIME, b"1767229200123"), *stamp[2:]]) is not None
