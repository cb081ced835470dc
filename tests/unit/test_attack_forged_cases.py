"""``make attack``'s forged signatures, judged by the victim's admission alone (the broker run is
tests/integration/test_attack_fast.py), on each Ed25519 backend: every one is refused, and the
malleated copy of a genuine signature (``S + L``) as ``bad_signature`` on both."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.security.ed25519 import BACKENDS, Backend
from bus.security.inbound import guard_for
from bus.security.keys import ED25519, KeyRing, VerifyKey
from proof.attack.cast import cast
from proof.attack.mesh_cases import FORGED, Builder
from tests.support import admission_verdicts


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_every_forged_signature_is_refused_on_each_backend(backend: Backend) -> None:
    actors = cast("atk-victim")
    now = now_ms()
    guard = guard_for(actors.victim, BusSettings(service_name="atk-victim"))
    assert guard.keyring is not None
    guard = replace(guard, keyring=KeyRing(
        VerifyKey(key.key_id, key.algorithm, key.service, key.material, backend=backend)
        if key.algorithm == ED25519 else key for key in guard.keyring))
    cases = [*Builder(actors, now).forged(), Builder(actors, now).control()]
    reasons = admission_verdicts(guard, actors.topic, cases, now)
    assert [case.category for case in cases].count(FORGED) == len(cases) - 1
    assert reasons.pop("genuine signed request") == "admitted"
    assert reasons["malleated signature (S + L) of a genuine record"] == "bad_signature"
    assert "admitted" not in reasons.values()
