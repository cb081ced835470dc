"""Who takes part in a mesh attack (pure): the victim service, a caller it trusts, and a
second trusted service that may not call it, and an edge (may name principals; sends the
victim nothing itself). One fresh Ed25519 key each, one keyring. The victim and its caller
accept per-pair MACs (``bus.security.pair_mac``), so every attack runs against a receiver
that takes both a signature and a MAC."""

from __future__ import annotations

from dataclasses import dataclass

from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, SigningKey, generate_ed25519

CALLER = "atk-caller"
OTHER = "atk-other"  # trusted (in the keyring), but not allowed to produce to the victim
EDGE = "atk-edge"  # the only service that may name a principal (bus.security.principals)
REPLIES = "mesh.replies"


@dataclass(frozen=True)
class Cast:
    victim: Identity
    caller: Identity
    other: Identity
    edge: Identity

    @property
    def topic(self) -> str:
        return f"{self.victim.service}.requests"

    def key_of(self, identity: Identity) -> SigningKey:
        assert identity.signing_key is not None
        return identity.signing_key


def cast(victim: str, replies: str = REPLIES) -> Cast:
    """``replies``: the reply topic the victim and ``atk-other`` may write to."""
    produce = {CALLER: [f"{victim}.requests"], victim: [replies], OTHER: [replies]}
    keys = {service: generate_ed25519(service) for service in (*produce, EDGE)}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce, edges=[EDGE], pair_mac=[victim, CALLER])
    who = {service: Identity(service, signing, keyring, access)
           for service, (signing, _) in keys.items()}
    return Cast(victim=who[victim], caller=who[CALLER], other=who[OTHER], edge=who[EDGE])
