"""A key retired by a rotation must stop working in a process that was running all along.

A victim starts trusting the sender's old key, with its keys reloaded from a store
(``bus.security.live_keys``). The sender's key is rotated through the real steps
(``infra.keys.key_rotation``: publish, switch, retire), the victim reloading after each. Then a
record signed with the retired key is offered to the victim's guard (the checks a record
passes before any handler): it must be refused as ``unknown_key_id``. The control, the same
message signed with the new key, must be admitted. Without reloading (the keyring frozen at
start, as before keys could rotate) the retired key's record was admitted and the new key's
refused.
"""

from __future__ import annotations

import time

from bus.config import BusSettings
from bus.envelope import ReplyTo, new_request, now_ms, to_headers
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.inbound import guard_for
from bus.security.keys import (
    KeyRing,
    KeyStatus,
    SecretKeys,
    SigningKey,
    generate_ed25519,
    secret_document,
)
from bus.security.live_keys import KeyMaterial, KeyReloader, LiveKeys
from bus.security.signing import sign
from bus.transport import Record
from infra.keys import key_rotation
from proof.attack.accounting import CONTROL, Outcome

CATEGORY = "retired_key"
SENDER, VICTIM = "rot-sender", "rot-victim"
TOPIC = f"{VICTIM}.requests"


class _Store:
    """The published keyring and the victim's own signing secret, as a rotation leaves them."""

    def __init__(self, ring: KeyRing, victim_secret: bytes) -> None:
        self.ring = ring
        self.secret = victim_secret

    def load(self) -> KeyMaterial:
        return KeyMaterial(self.ring.to_dict(), self.secret)


def _record(key: SigningKey, offset: int) -> Record:
    envelope = new_request(source=SENDER, operation=f"{VICTIM}.op", value=b"{}",
                           reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 30_000)
    signed = sign(envelope, TOPIC, key)
    return Record(TOPIC, 0, offset, signed.value, headers=to_headers(signed))


def run_retired_key(*, reload: bool = True) -> list[Outcome]:
    """The attack and its control; ``reload=False`` is the victim as it was before."""
    old, old_v = generate_ed25519(SENDER)
    victim_key, victim_v = generate_ed25519(VICTIM)
    ring = KeyRing()
    ring.add(old_v, KeyStatus("current", 1))
    ring.add(victim_v, KeyStatus("current", 1))
    store = _Store(ring, secret_document(SecretKeys(victim_key)))
    keys = LiveKeys(VICTIM, KeyRing.from_dict(ring.to_dict()), victim_key)
    reloader = KeyReloader(keys, store, interval_s=3600)
    identity = Identity(VICTIM, victim_key, keys.keyring,
                        AccessPolicy.from_dict({SENDER: [TOPIC]}), live=keys)
    guard = guard_for(identity, BusSettings(service_name=VICTIM))

    new, new_v = generate_ed25519(SENDER)
    now = now_ms()
    for step in ("publish", "switch", "retire"):
        if step == "publish":
            store.ring = key_rotation.published(store.ring, SENDER, new_v, now)
        elif step == "switch":
            store.ring = key_rotation.switched(store.ring, SENDER, new.key_id, now)
        else:
            store.ring = key_rotation.retired(store.ring, SENDER)
        if reload:
            reloader.reload_blocking()

    outcomes = []
    for offset, (category, label, key) in enumerate((
            (CATEGORY, "message signed with the retired key", old),
            (CONTROL, "the same message signed with the new key", new))):
        started = time.monotonic()
        try:
            guard.admit(_record(key, offset), now_ms())
        except MeshError as exc:
            outcomes.append(Outcome(category, f"rotation: {label}", True, 0, exc.code))
        else:
            outcomes.append(Outcome(category, f"rotation: {label}", False, 1,
                                    f"admitted in {time.monotonic() - started:.3f}s"))
    return outcomes
