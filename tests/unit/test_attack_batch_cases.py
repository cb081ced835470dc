"""``make attack``'s batch-signature forgeries, judged by the victim's admission alone (the
broker run is tests/integration/test_attack_fast.py): the two genuine messages of a batch are
admitted once each, every forgery is refused with the reason a receiver must give."""

from __future__ import annotations

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.security.inbound import guard_for
from proof.attack.cast import cast
from proof.attack.mesh_cases import BATCH_FORGED, GENUINE, Builder
from tests.support import admission_verdicts


def test_every_batch_forgery_is_refused_and_the_genuine_ones_admitted() -> None:
    actors = cast("atk-victim")
    now = now_ms()
    guard = guard_for(actors.victim, BusSettings(service_name="atk-victim"))
    cases = list(Builder(actors, now).batch_forged())
    reasons = admission_verdicts(guard, actors.topic, cases, now)
    assert [case.category for case in cases].count(GENUINE) == 2
    assert [case.category for case in cases].count(BATCH_FORGED) == len(cases) - 2
    # Two roots verified: the caller's (once, for both genuine messages) and atk-other's (its
    # signature is genuine; the source it claims is refused after it).
    assert len(guard.roots) == 2
    assert reasons == {
        "genuine batch request (first of its batch)": "admitted",
        "genuine batch request (second, root already verified)": "admitted",
        "genuine batch message, value changed (root verified)": "bad_signature",
        "a batch message carrying another's path": "bad_signature",
        "a batch message claiming a larger batch": "bad_signature",
        "a batch message with random signature bytes": "bad_signature",
        "genuine batch message, its path respelled (root verified)": "malformed_signature",
        "genuine batch message, its signature respelled": "malformed_signature",
        "the caller's batch signed for another topic": "bad_signature",
        "another service's batch key, claiming the caller": "sender_mismatch",
        "another service's batch relabelled with the caller's key id": "bad_signature",
        "a batch root signed without its domain and count": "bad_signature",
        "a batch signed by an untrusted key": "unknown_key_id",
        "genuine batch message, replayed (same id)": "replayed_message",
        "a batch of one in batch form": "malformed_signature",
    }
