"""``make attack``'s base64url respellings: a genuine record whose signature or batch path is
the same bytes in another spelling (a spare bit of the last character set). The receiver's
strict decode refuses each; with a lenient decoder in its place the same cases are admitted,
so the cases test the strictness and nothing else."""

from __future__ import annotations

import base64

import pytest

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.security import batch_sig, signing
from bus.security.inbound import guard_for
from proof.attack.cast import cast
from proof.attack.mesh_cases import GENUINE, Builder
from tests.support import admission_verdicts

RESPELLED = {
    "genuine record, its signature respelled in base64url",
    "genuine batch message, its path respelled (root verified)",
    "genuine batch message, its signature respelled",
}


def verdicts() -> dict[str, str]:
    actors = cast("atk-victim")
    now = now_ms()
    builder = Builder(actors, now)
    cases = [case for case in (*builder.wire_format(), *builder.batch_forged())
             if case.label in RESPELLED or case.category == GENUINE]
    guard = guard_for(actors.victim, BusSettings(service_name="atk-victim"))
    return admission_verdicts(guard, actors.topic, cases, now)


def lenient(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_each_respelling_is_refused() -> None:
    found = verdicts()
    assert {label: found[label] for label in RESPELLED} == dict.fromkeys(
        RESPELLED, "malformed_signature")
    assert found["genuine batch request (first of its batch)"] == "admitted"


def test_a_lenient_decoder_would_admit_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "decode_b64url", lenient)
    monkeypatch.setattr(batch_sig, "decode_b64url", lenient)
    found = verdicts()
    assert {label: found[label] for label in RESPELLED} == dict.fromkeys(RESPELLED, "admitted")
