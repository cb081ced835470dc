"""The rotation's decisions (``infra.keys.key_rotation``): every state of the two stores leads to
one next step, a whole rotation walks through them, and an interrupted one resumes."""

from __future__ import annotations

import pytest

from bus.security.keys import KeyRing, KeyStatus, SecretKeys, generate_ed25519
from infra.keys import key_rotation
from infra.keys.key_rotation import RotationConflict, next_step

OLD, OLD_V = generate_ed25519("orders")
NEW, NEW_V = generate_ed25519("orders")
GW, GW_V = generate_ed25519("gateway")
GRACE = 5_000


def steady() -> KeyRing:
    ring = KeyRing()
    ring.add(OLD_V, KeyStatus("current", 1))
    ring.add(GW_V, KeyStatus("current", 1))
    return ring


def test_a_whole_rotation_step_by_step() -> None:
    ring, secret, now = steady(), SecretKeys(OLD), 10_000
    assert next_step("orders", secret, ring, started=False, now_ms=now,
                     grace_ms=GRACE).action == "prepare"
    assert next_step("orders", secret, ring, started=True, now_ms=now,
                     grace_ms=GRACE).action == "done"
    secret = SecretKeys(OLD, NEW)
    assert next_step("orders", secret, ring, started=True, now_ms=now,
                     grace_ms=GRACE).action == "publish"
    ring = key_rotation.published(ring, "orders", NEW_V, now)
    wait = next_step("orders", secret, ring, started=True, now_ms=now + 1, grace_ms=GRACE)
    assert (wait.action, wait.wait_until_ms) == ("wait", now + GRACE)
    now += GRACE
    assert next_step("orders", secret, ring, started=True, now_ms=now,
                     grace_ms=GRACE).action == "switch"
    secret = SecretKeys(NEW)
    ring = key_rotation.switched(ring, "orders", NEW.key_id, now)
    assert ring.status(OLD.key_id).state == "retiring"
    assert OLD_V.key_id in ring
    assert next_step("orders", secret, ring, started=True, now_ms=now + 1,
                     grace_ms=GRACE).action == "wait"
    now += GRACE
    assert next_step("orders", secret, ring, started=True, now_ms=now,
                     grace_ms=GRACE).action == "retire"
    ring = key_rotation.retired(ring, "orders")
    assert [k.key_id for k in ring.for_service("orders")] == [NEW.key_id]
    assert ring.status(GW.key_id) == KeyStatus("current", 1)  # other services untouched
    assert next_step("orders", secret, ring, started=True, now_ms=now,
                     grace_ms=GRACE).action == "done"


def test_a_run_that_starts_mid_rotation_resumes_it_instead_of_starting_another() -> None:
    ring = key_rotation.published(steady(), "orders", NEW_V, 1_000)
    step = next_step("orders", SecretKeys(OLD, NEW), ring, started=False, now_ms=2_000,
                     grace_ms=GRACE)
    assert step.action == "wait"
    # crashed between writing the secret and the keyring of the switch
    assert next_step("orders", SecretKeys(NEW), ring, started=False, now_ms=9_000,
                     grace_ms=GRACE).action == "finish_switch"
    switched = key_rotation.switched(ring, "orders", NEW.key_id, 9_000)
    assert next_step("orders", SecretKeys(NEW), switched, started=False, now_ms=20_000,
                     grace_ms=GRACE).action == "retire"


def test_a_secret_whose_key_is_not_published_is_a_conflict() -> None:
    with pytest.raises(RotationConflict):
        next_step("orders", SecretKeys(NEW), steady(), started=False, now_ms=1,
                  grace_ms=GRACE)


def test_a_deploy_keeps_the_rotation_under_way() -> None:
    live = key_rotation.switched(key_rotation.published(steady(), "orders", NEW_V, 1_000),
                                 "orders", NEW.key_id, 2_000)
    entries = key_rotation.deployed_entries("orders", SecretKeys(NEW), live, 50_000)
    assert {(k.key_id, s) for k, s in entries} == {
        (NEW.key_id, KeyStatus("current", 2_000)), (OLD.key_id, KeyStatus("retiring", 2_000))}
    first = key_rotation.deployed_entries("orders", SecretKeys(OLD, NEW), None, 7)
    assert {(k.key_id, s.state) for k, s in first} == {(OLD.key_id, "current"),
                                                       (NEW.key_id, "next")}
