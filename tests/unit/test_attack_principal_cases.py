"""``make attack``'s principal spoofs, judged by the victim's admission alone (the broker run is
tests/integration/test_attack_fast.py): each is refused with its own reason, and the genuine
nested call that forwards the edge's assertion is admitted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast as typing_cast

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.errors import MeshError
from bus.security.inbound import guard_for
from bus.transport import Record
from proof.attack.cast import cast
from proof.attack.mesh_cases import PRINCIPAL_SPOOF, Builder


def test_every_principal_spoof_is_refused_with_its_reason_and_the_forward_is_admitted() -> None:
    actors = cast("atk-victim")
    now = now_ms()
    guard = guard_for(actors.victim, BusSettings(service_name="atk-victim"))
    cases = list(Builder(actors, now).principal_spoof())
    reasons: dict[str, str] = {}
    for offset, case in enumerate(cases):
        record = Record(actors.topic, 0, offset, case.value,
                        headers=typing_cast(Sequence[tuple[str, bytes]], case.headers))
        try:
            envelope = guard.admit(record, now)
        except MeshError as exc:
            reasons[case.label] = exc.code
        else:
            assert case.genuine, f"{case.label} was admitted"
            assert envelope.principal == '{"method":"jwt","sub":"alice"}'
            reasons[case.label] = "admitted"
    assert [case.category for case in cases].count(PRINCIPAL_SPOOF) == len(cases) - 1
    assert reasons == {
        "nested call forwarding the edge's assertion": "admitted",
        "admin principal, no assertion": "principal_not_allowed",
        "assertion by the caller's own key (not an edge)": "principal_assertion_not_edge",
        "assertion by another trusted service (not an edge)": "principal_assertion_not_edge",
        "expired edge assertion": "principal_assertion_expired",
        "edge assertion of other principal bytes (same JSON, reordered)":
            "bad_principal_assertion",
        "genuine edge assertion moved onto another principal": "bad_principal_assertion",
        "genuine edge assertion with its expiry pushed back": "bad_principal_assertion",
    }
