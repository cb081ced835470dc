"""``make attack``'s per-pair MAC forgeries, judged by the victim's admission alone (the broker
run is tests/integration/test_attack_fast.py): the genuine pair-MAC request is admitted once,
every forgery is refused with the reason a receiver must give."""

from __future__ import annotations

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.security.inbound import guard_for
from proof.attack.cast import cast
from proof.attack.mesh_cases import GENUINE, PAIR_FORGED, Builder
from tests.support import admission_verdicts


def test_every_pair_mac_forgery_is_refused_and_the_genuine_one_admitted() -> None:
    actors = cast("atk-victim")
    now = now_ms()
    guard = guard_for(actors.victim, BusSettings(service_name="atk-victim"))
    cases = [*Builder(actors, now).pair_forged(), Builder(actors, now).control()]
    reasons = admission_verdicts(guard, actors.topic, cases, now)
    assert [case.category for case in cases].count(GENUINE) == 1
    assert [case.category for case in cases].count(PAIR_FORGED) == len(cases) - 2
    assert reasons == {
        "genuine pair-MAC request": "admitted",
        "genuine signed request": "admitted",
        "another service's pair key, claiming the caller": "sender_mismatch",
        "another service's pair MAC relabelled as the caller's": "bad_signature",
        "the caller's MAC for another receiver": "pair_key_unknown",
        "the caller's MAC for another receiver, relabelled": "bad_signature",
        "the victim's MAC to the caller, reflected": "bad_signature",
        "HMAC keyed with the public keys": "bad_signature",
        "random MAC bytes, real key ids": "bad_signature",
        "genuine pair MAC, value changed": "bad_signature",
        "genuine pair MAC, sent to another topic": "bad_signature",
        "genuine pair MAC, replayed (same id)": "replayed_message",
        "pair MAC by an untrusted key": "unknown_key_id",
    }
