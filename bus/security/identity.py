"""A service's identity on the mesh: its signing key, the keys it trusts, the access map.

Loaded from ``BusSettings`` (explicit argument over ``MESH_*`` environment over default). A
service without a key or keyring refuses to start unless ``insecure`` is set explicitly:
signed identity per message is the default, not an option.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bus.config import BusSettings
from bus.envelope import KIND_REQUEST, Envelope
from bus.errors import MeshError
from bus.security.access import AccessPolicy
from bus.security.batch_signer import MAX_BATCH, BatchSigner
from bus.security.keys import (
    ED25519,
    HMAC_SHA256,
    KeyRing,
    SecretSource,
    SigningKey,
    VerifyKey,
    decode_b64url,
    load_signing_key,
    signing_key_from_env,
    signing_key_from_source,
)
from bus.security.live_keys import LiveKeys
from bus.security.pair_mac import PairKeys
from bus.security.principals import principal_for_call
from bus.security.signing import sign
from bus.topics import BadOperationName, service_of

SIGNING_KEY_ENV = "MESH_SIGNING_KEY"


class IdentityError(MeshError):
    code = "identity"


@dataclass(frozen=True)
class Identity:
    service: str
    signing_key: SigningKey | None
    keyring: KeyRing | None
    access: AccessPolicy
    # Set when the keys are reloaded while the process runs (bus.security.live_keys): it holds the
    # signing key in force; ``signing_key`` is then the one the process started with.
    live: LiveKeys | None = None
    # How many messages of one event-loop turn share a signature (bus.security.batch_signer).
    batch_max: int = field(default=MAX_BATCH, kw_only=True)
    # Per-pair MAC keys (bus.security.pair_mac): this process's side, derived on first use.
    pair: PairKeys | None = field(init=False, repr=False, compare=False)
    batch: BatchSigner = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        own = self.signing_key
        pair = (PairKeys([own], current=self.key_in_force)
                if own is not None and own.algorithm == ED25519 else None)
        object.__setattr__(self, "pair", pair)
        object.__setattr__(self, "batch", BatchSigner(self.key_in_force, max_batch=self.batch_max))

    @classmethod
    def insecure(cls, service: str) -> Identity:
        """No signatures, everyone may produce everywhere: tests and experiments only."""
        return cls(service, None, None, AccessPolicy.open())

    def key_in_force(self) -> SigningKey | None:
        """The key to sign with now (it changes during a rotation when ``live`` is set)."""
        return self.live.signing_key if self.live is not None else self.signing_key

    def outgoing(self, envelope: Envelope, topic: str, *, to: str | None = None) -> Envelope:
        """Check this service may produce to ``topic`` and sign ``envelope`` for it.

        ``to`` is the one service the message is for (a reply's caller; a request's is its
        operation's service): when the policy lets it accept per-pair MACs and it has exactly
        one published key (no rotation under way), the message carries a pair MAC for that
        key instead of an Ed25519 signature. Events, with any number of readers, are signed.
        """
        sealed, key = self._sealed_unless_owed(envelope, topic, to)
        return sealed if key is None else sign(envelope, topic, key)

    async def outgoing_batched(self, envelope: Envelope, topic: str, *, to: str | None = None
                               ) -> Envelope:
        """``outgoing``, with an Ed25519 signature shared by the messages this process seals in
        the same event-loop turn (``bus.security.batch_signer``): a message alone in its turn
        is signed alone, one turn later."""
        sealed, key = self._sealed_unless_owed(envelope, topic, to)
        if key is None:
            return sealed
        if key.algorithm != ED25519 or self.batch_max == 1:
            return sign(envelope, topic, key)
        return await self.batch.seal(envelope, topic)

    def _sealed_unless_owed(self, envelope: Envelope, topic: str, to: str | None
                            ) -> tuple[Envelope, SigningKey | None]:
        """After the access check: ``envelope`` as it is sent and None when it owes no
        signature (no key: insecure; a pair MAC for its one receiver), else ``envelope`` and
        the key to sign it with."""
        self.access.check_produce(self.service, topic)
        key = self.key_in_force()
        if key is None:
            return envelope, None
        receiver = to if to is not None or envelope.kind != KIND_REQUEST else _owner(envelope)
        if (receiver is not None and self.pair is not None and self.keyring is not None
                and self.access.accepts_pair_mac(receiver)):
            keys = self.keyring.for_service(receiver)
            if len(keys) == 1 and keys[0].algorithm == ED25519:
                return self.pair.seal(envelope, topic, key, keys[0]), None
        return envelope, key

    def on_behalf_of(self, own: str | None, inherited: tuple[str | None, str | None], *,
                     expires_ms: int, now_ms: int) -> tuple[str | None, str | None]:
        """The principal and assertion of a call made now, which ends at ``expires_ms``
        (``bus.security.principals.principal_for_call``): an edge asserts it, any other service
        forwards the handled message's unchanged or is refused (``PrincipalNotAllowed``)."""
        return principal_for_call(
            own, inherited, service=self.service, edge=self.access.is_edge(self.service),
            key=self.key_in_force(), expires_ms=expires_ms, now_ms=now_ms)


def _owner(request: Envelope) -> str | None:
    try:
        return service_of(request.type)
    except BadOperationName:
        return None


def _read_json(inline: str | None, path: str | None, what: str) -> object | None:
    try:
        if inline:
            data: object = json.loads(inline)
        elif path:
            data = json.loads(Path(path).read_text())
        else:
            return None
    except (OSError, json.JSONDecodeError) as exc:
        raise IdentityError(f"cannot read the {what}: {exc}") from exc
    return data


def _hmac_keys(data: object | None) -> list[VerifyKey]:
    if data is None:
        return []
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise IdentityError("the HMAC keys file needs {'keys': [{key_id, service, secret}]}")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise IdentityError("each HMAC key is an object {key_id, service, secret}")
        try:
            secret = decode_b64url(str(entry["secret"]))
            keys.append(VerifyKey(str(entry["key_id"]), HMAC_SHA256, str(entry["service"]),
                                  secret))
        except (KeyError, ValueError) as exc:
            raise IdentityError(f"bad HMAC key entry: {exc!r}") from exc
    return keys


def load_identity(
    settings: BusSettings,
    *,
    env: Mapping[str, str] | None = None,
    secrets: SecretSource | None = None,
) -> Identity:
    source = os.environ if env is None else env
    if settings.insecure:
        return Identity.insecure(settings.service_name)
    key: SigningKey | None = None
    algorithm, key_id = settings.signing_algorithm, settings.signing_key_id
    if settings.signing_key_file:
        key = load_signing_key(settings.signing_key_file, algorithm=algorithm, key_id=key_id)
    elif source.get(SIGNING_KEY_ENV):
        key = signing_key_from_env(SIGNING_KEY_ENV, source, algorithm=algorithm, key_id=key_id)
    elif settings.signing_key_secret:
        if secrets is None:
            raise IdentityError("signing_key_secret is set but no secret source was given")
        key = signing_key_from_source(secrets, settings.signing_key_secret,
                                      algorithm=algorithm, key_id=key_id)
    keyring_data = _read_json(settings.keyring_json, settings.keyring_file, "keyring")
    hmac_data = _read_json(None, settings.hmac_keys_file, "HMAC keys")
    if keyring_data is None and hmac_data is not None:
        keyring_data = {"keys": []}
    access_data = _read_json(settings.access_json, settings.access_file, "access map")
    missing = [name for name, value in (("a signing key", key), ("a keyring", keyring_data),
                                        ("an access map", access_data)) if value is None]
    if missing:
        raise IdentityError(
            f"{settings.service_name} has no {', '.join(missing)}; configure MESH_SIGNING_KEY"
            " / MESH_KEYRING_FILE / MESH_ACCESS_FILE, or set MESH_INSECURE=1 for tests"
        )
    if not isinstance(keyring_data, dict):
        raise IdentityError("the keyring must be a JSON object {'keys': [...]}")
    keyring = KeyRing.from_dict(keyring_data)
    for shared in _hmac_keys(hmac_data):
        keyring.add(shared)
    produce = access_data.get("produce") if isinstance(access_data, dict) else None
    consume = access_data.get("consume") if isinstance(access_data, dict) else None
    if consume is not None and not isinstance(consume, dict):
        raise IdentityError("the access map's 'consume' must be {service: [topics]}")
    replay = access_data.get("replay") if isinstance(access_data, dict) else None
    if replay is not None and not isinstance(replay, dict):
        raise IdentityError("the access map's 'replay' must be {operator: [topics]}")
    calls = access_data.get("call") if isinstance(access_data, dict) else None
    if calls is not None and not isinstance(calls, dict):
        raise IdentityError("the access map's 'call' must be {service: [operations]}")
    if not isinstance(produce, dict):
        raise IdentityError("the access map needs {'produce': {service: [topics]}}")
    edges = access_data.get("edges", []) if isinstance(access_data, dict) else []
    if not isinstance(edges, list) or not all(isinstance(edge, str) for edge in edges):
        raise IdentityError("the access map's 'edges' must be [service, ...]")
    free = access_data.get("side_effect_free", []) if isinstance(access_data, dict) else []
    if not isinstance(free, list) or not all(isinstance(op, str) for op in free):
        raise IdentityError("the access map's 'side_effect_free' must be [operation, ...]")
    pair_mac = access_data.get("pair_mac", []) if isinstance(access_data, dict) else []
    if not isinstance(pair_mac, list) or not all(isinstance(svc, str) for svc in pair_mac):
        raise IdentityError("the access map's 'pair_mac' must be [service, ...]")
    return Identity(settings.service_name, key, keyring,
                    AccessPolicy.from_dict(produce, consume, replay, edges=edges, calls=calls,
                                           side_effect_free=free, pair_mac=pair_mac),
                    batch_max=settings.signature_batch_max)

