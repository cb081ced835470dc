"""Keys that rotate under a running process: the secret's rotation document, the keyring's
states, ``LiveKeys.apply`` and the ``KeyReloader`` (interval, unknown key ids, bad input)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import pytest

from bus.envelope import ReplyTo, new_request
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import (
    InvalidKey,
    KeyRing,
    KeyStatus,
    SecretKeys,
    UnknownKeyId,
    generate_ed25519,
    secret_document,
    signing_key_from_bytes,
    signing_keys_from_bytes,
)
from bus.security.live_keys import KeyMaterial, KeyReloader, KeySourceError, LiveKeys
from bus.security.signing import parse_signature, verify

OLD, OLD_V = generate_ed25519("orders")
NEW, NEW_V = generate_ed25519("orders")
OTHER, OTHER_V = generate_ed25519("inventory")


def ring_doc(*entries: tuple[object, str]) -> Mapping[str, object]:
    ring = KeyRing()
    for key, state in entries:
        ring.add(key, KeyStatus(state, 5))  # type: ignore[arg-type]
    return ring.to_dict()


def test_a_rotation_document_holds_current_and_next_and_reads_as_its_current_key() -> None:
    data = secret_document(SecretKeys(OLD, NEW))
    assert signing_keys_from_bytes(data) == SecretKeys(OLD, NEW)
    assert signing_key_from_bytes(data) == OLD  # every older reader signs with current
    assert signing_keys_from_bytes(OLD.secret) == SecretKeys(OLD)  # a raw key still reads
    assert signing_keys_from_bytes(secret_document(SecretKeys(NEW))) == SecretKeys(NEW)


@pytest.mark.parametrize("data", [b'{"version": 2, "current": "x"}', b'{"version": 1}',
                                  b'{"version": 1, "current": "AAAA"}', b"{not json"])
def test_a_bad_rotation_document_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidKey):
        signing_keys_from_bytes(data)


def test_keyring_states_round_trip_and_default_to_current() -> None:
    ring = KeyRing.from_dict(json.loads(json.dumps(ring_doc((OLD_V, "retiring"),
                                                            (NEW_V, "current")))))
    assert ring.status(OLD_V.key_id) == KeyStatus("retiring", 5)
    legacy = {"keys": [{k: v for k, v in entry.items() if k not in ("state", "since_ms")}
                       for entry in KeyRing([OTHER_V]).to_dict()["keys"]]}
    assert KeyRing.from_dict(legacy).status(OTHER_V.key_id) == KeyStatus()
    with pytest.raises(InvalidKey):
        KeyRing.from_dict({"keys": [{**KeyRing([OTHER_V]).to_dict()["keys"][0],
                                     "state": "revoked"}]})


def live(signing: object = OLD) -> LiveKeys:
    ring = KeyRing.from_dict(ring_doc((OLD_V, "current"), (OTHER_V, "current")))
    return LiveKeys("orders", ring, signing)  # type: ignore[arg-type]


def test_apply_swaps_the_same_keyring_object_and_switches_only_to_a_trusted_key() -> None:
    keys = live()
    ring = keys.keyring
    # the secret already names NEW, the keyring does not trust it yet: keep signing with OLD
    assert keys.apply(KeyMaterial(ring_doc((OLD_V, "current"), (OTHER_V, "current")),
                                  secret_document(SecretKeys(NEW)))) is False
    assert keys.signing_key == OLD
    published = ring_doc((OLD_V, "current"), (NEW_V, "next"), (OTHER_V, "current"))
    assert keys.apply(KeyMaterial(published, secret_document(SecretKeys(OLD, NEW))))
    assert keys.keyring is ring
    assert NEW_V.key_id in ring
    assert keys.signing_key == OLD
    keys.apply(KeyMaterial(published, secret_document(SecretKeys(NEW))))
    assert keys.signing_key == NEW
    keys.apply(KeyMaterial(ring_doc((NEW_V, "current"), (OTHER_V, "current")),
                           secret_document(SecretKeys(NEW))))
    with pytest.raises(UnknownKeyId):
        ring.get(OLD_V.key_id)  # retired: a guard holding this ring refuses it now


def test_a_keyring_without_the_process_s_own_key_is_refused_and_changes_nothing() -> None:
    keys = live()
    with pytest.raises(InvalidKey):
        keys.apply(KeyMaterial(ring_doc((OTHER_V, "current")), None))
    assert OLD_V.key_id in keys.keyring
    assert keys.version == 0


def test_the_identity_signs_with_the_key_in_force() -> None:
    keys = live()
    identity = Identity("orders", OLD, keys.keyring, AccessPolicy.open(), live=keys)
    event = new_request(source="orders", operation="inventory.stock", value=b"{}",
                        reply_to=ReplyTo("mesh.replies", 0), deadline_ms=2**40)
    assert parse_signature(identity.outgoing(event, "t").signature).key_id == OLD.key_id
    keys.apply(KeyMaterial(ring_doc((OLD_V, "retiring"), (NEW_V, "current"),
                                    (OTHER_V, "current")), secret_document(SecretKeys(NEW))))
    signed = identity.outgoing(event, "t")
    assert parse_signature(signed.signature).key_id == NEW.key_id
    assert verify(signed, "t", keys.keyring) == NEW_V


class Source:
    def __init__(self, material: KeyMaterial) -> None:
        self.material: KeyMaterial | Exception = material
        self.reads = 0

    def load(self) -> KeyMaterial:
        self.reads += 1
        if isinstance(self.material, Exception):
            raise self.material
        return self.material


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refresh_if_due_reads_once_per_interval_and_early_on_an_unknown_key_id() -> None:
    clock, keys = Clock(), live()
    source = Source(KeyMaterial(ring_doc((OLD_V, "current"), (OTHER_V, "current")), None))
    reloader = KeyReloader(keys, source, 10.0, min_gap_s=2.0, clock=clock)
    assert reloader.refresh_if_due() is False
    assert source.reads == 1
    clock.now += 1
    reloader.refresh_if_due()
    assert source.reads == 1
    for _ in range(50):  # a flood of made-up key ids
        with pytest.raises(UnknownKeyId):
            keys.keyring.get("ed25519-made-up")
    reloader.refresh_if_due()
    assert source.reads == 1  # the gap since the last read is not over
    clock.now += 1
    reloader.refresh_if_due()
    assert source.reads == 2  # one read for the whole flood
    clock.now += 9.9
    reloader.refresh_if_due()
    assert source.reads == 2
    clock.now += 0.1
    reloader.refresh_if_due()
    assert source.reads == 3


def test_an_unreadable_or_bad_source_keeps_the_keys_in_force() -> None:
    keys = live()
    source = Source(KeyMaterial({"keys": "nope"}, None))
    reloader = KeyReloader(keys, source, 1.0)
    assert reloader.reload_blocking() is False
    source.material = KeySourceError("ssm down")
    assert reloader.reload_blocking() is False
    assert reloader.failures == 2
    assert OLD_V.key_id in keys.keyring
    assert keys.version == 0


async def test_the_loop_task_reloads_and_stops() -> None:
    keys = live()
    source = Source(KeyMaterial(ring_doc((OLD_V, "current"), (NEW_V, "next"),
                                         (OTHER_V, "current")), None))
    reloader = KeyReloader(keys, source, 0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(reloader.run(stop))
    for _ in range(1000):  # bounded: the task reads every 10 ms
        if NEW_V.key_id in keys.keyring:
            break
        await asyncio.sleep(0.005)
    assert NEW_V.key_id in keys.keyring
    stop.set()
    async with asyncio.timeout(5):
        await task
