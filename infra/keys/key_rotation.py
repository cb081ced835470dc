"""Rotating a service's mesh key, as decisions over the two stores (pure: no I/O, ``now_ms``
is passed). The stores are the service's signing secret (``SecretKeys``: current, and next
during a rotation) and the published keyring (``KeyRing``, each key with its state).

A rotation is three steps, each followed by a grace period (at least one reload interval
of every process, plus the time a message signed before the step may still be in flight):

1. ``prepare`` + ``publish``: a new key is stored as the secret's ``next`` and published as
   ``next``: verifiers learn it, signers still sign with the current key;
2. ``switch``: the secret's current becomes the new key (signers switch as they reload),
   the keyring marks it ``current`` and the old key ``retiring`` (still trusted);
3. ``retire``: the old key leaves the keyring; a message signed with it is then refused as
   ``unknown_key_id``.

``next_step`` reads the stores and says what to do next, so an interrupted rotation resumes
where it stopped, and a step repeated after a crash changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bus.security.keys import KeyRing, KeyStatus, SecretKeys, VerifyKey
from infra.errors import InfraError

Action = Literal["prepare", "publish", "wait", "switch", "finish_switch", "retire", "done"]


class RotationConflict(InfraError):
    """The stores disagree in a way no step explains (edited by hand): nothing is done."""


@dataclass(frozen=True)
class Step:
    action: Action
    detail: str
    wait_until_ms: int = 0  # for "wait"


def _of(ring: KeyRing, service: str, state: str) -> list[VerifyKey]:
    return [key for key in ring.for_service(service) if ring.status(key.key_id).state == state]


def next_step(service: str, secret: SecretKeys, ring: KeyRing, *, started: bool, now_ms: int,
              grace_ms: int) -> Step:
    """What the rotation of ``service`` does next. ``started``: this run already began a
    rotation (so a steady state means it is finished, not that one should begin)."""
    current, upcoming = secret.current, secret.next
    if upcoming is not None:  # step 1 done in the secret
        if upcoming.key_id not in ring:
            return Step("publish", f"publish {upcoming.key_id} as next")
        published = ring.status(upcoming.key_id)
        if published.since_ms + grace_ms > now_ms:
            return Step("wait", f"verifiers learn {upcoming.key_id}",
                        published.since_ms + grace_ms)
        return Step("switch", f"sign with {upcoming.key_id} instead of {current.key_id}")
    if current.key_id not in ring:
        raise RotationConflict(f"{service}'s signing key {current.key_id} is not in the "
                               "keyring", "run 'meshgate deploy' to publish it")
    status = ring.status(current.key_id)
    if status.state != "current":  # the secret switched, the keyring not yet
        return Step("finish_switch", f"mark {current.key_id} current")
    retiring = _of(ring, service, "retiring")
    if retiring:
        if status.since_ms + grace_ms > now_ms:
            return Step("wait", "signers switch and in-flight messages drain",
                        status.since_ms + grace_ms)
        return Step("retire", "retire " + ", ".join(key.key_id for key in retiring))
    if started:
        return Step("done", f"{service} signs with {current.key_id}")
    return Step("prepare", f"new key for {service}")


def published(ring: KeyRing, service: str, key: VerifyKey, now_ms: int) -> KeyRing:
    """Step 1: ``key`` trusted as ``next``."""
    out = _copy(ring)
    out.add(key, KeyStatus("next", now_ms))
    return out


def switched(ring: KeyRing, service: str, new_key_id: str, now_ms: int) -> KeyRing:
    """Step 2: ``new_key_id`` current, the service's other keys retiring (still trusted)."""
    out = _copy(ring)
    for key in out.for_service(service):
        if key.key_id == new_key_id:
            out.set_status(key.key_id, KeyStatus("current", now_ms))
        elif out.status(key.key_id).state != "retiring":
            out.set_status(key.key_id, KeyStatus("retiring", now_ms))
    return out


def retired(ring: KeyRing, service: str) -> KeyRing:
    """Step 3: the service's retiring keys are no longer trusted."""
    out = _copy(ring)
    for key in _of(out, service, "retiring"):
        out.remove(key.key_id)
    return out


def deployed_entries(service: str, secret: SecretKeys, live: KeyRing | None, now_ms: int
                     ) -> list[tuple[VerifyKey, KeyStatus]]:
    """The keyring entries of ``service`` a deploy publishes: its secret's keys, and, from
    the live keyring, the state of a rotation under way (so a deploy never drops a key that
    is still trusted, or cuts a grace period short)."""
    live = live or KeyRing()

    def kept(key: VerifyKey, state: Literal["next", "current", "retiring"]) -> KeyStatus:
        known = live.status(key.key_id) if key.key_id in live else None
        return known if known is not None and known.state == state else KeyStatus(state, now_ms)

    current = secret.current.verify_key(service)
    entries = [(current, kept(current, "current"))]
    own = {current.key_id}
    if secret.next is not None:
        upcoming = secret.next.verify_key(service)
        entries.append((upcoming, kept(upcoming, "next")))
        own.add(upcoming.key_id)
    for key in live.for_service(service):
        if key.key_id not in own:
            entries.append((key, kept(key, "retiring")))
    return entries


def _copy(ring: KeyRing) -> KeyRing:
    out = KeyRing()
    for key in ring:
        out.add(key, ring.status(key.key_id))
    return out
