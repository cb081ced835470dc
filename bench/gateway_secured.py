"""The gateway bench's secured sides: the gateway with its messages sealed as a stack seals
them, Ed25519 signatures (``signed``) or per-pair MACs between the gateway and orders
(``pair``), each with its worker keeping an idempotency record; and the check that a run
really did so (``bench.gateway_overhead``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bench.gateway_apps import BenchFailure, Gateway, StandIns, gateway
from bus.policy.model import Policy
from bus.security.access import AccessPolicy
from bus.security.batch_sig import BATCH_ED25519
from bus.security.keys import ED25519
from bus.security.pair_mac import PAIR_HMAC
from functions.orders.service import orders
from infra.policy.derive import access_map


def access_of(policy: Policy) -> AccessPolicy:
    """The access map the deploy derives from ``policy`` (``infra.policy.derive``), as every
    process of a stack reads it: the gateway is an edge, and may call ``orders.create``."""
    derived = access_map(policy)
    return AccessPolicy.from_dict(
        derived["produce"], derived["consume"], derived["replay"], edges=derived["edges"],
        calls=derived["call"], side_effect_free=derived["side_effect_free"],
        pair_mac=derived["pair_mac"])


# The secured sides and the schemes each must have sealed every request and reply with (a
# message alone in its event-loop turn is signed alone; the bench sends one at a time).
SECURED = {"signed": frozenset({ED25519, BATCH_ED25519}), "pair": frozenset({PAIR_HMAC})}


def secured_gateways(policy: Policy) -> dict[str, Gateway]:
    """The gateway with messages sealed as a stack seals them: Ed25519 signatures
    (``signed``), or per-pair MACs between the gateway and orders (``pair``)."""
    access = access_of(policy)
    pair = replace(access, pair_mac=access.pair_mac | {"gateway", orders.name})
    return {"signed": gateway(policy, StandIns(access=access)),
            "pair": gateway(policy, StandIns(access=pair))}


def check_secured(secured: Mapping[str, Gateway]) -> dict[str, Any]:
    """Raise ``BenchFailure`` unless each secured side sealed every message with its scheme
    and its worker kept a record of each call; their counts, for the result."""
    seals = {name: app.stand_ins.seals() for name, app in secured.items()}
    records = {name: len(app.stand_ins.store) for name, app in secured.items()
               if app.stand_ins.store is not None}
    for name, found in seals.items():
        if not found or not set(found) <= SECURED[name]:
            raise BenchFailure(f"the {name} side's messages were sealed {found}, "
                               f"not all with {sorted(SECURED[name])}")
        calls = secured[name].stand_ins.handled
        if records.get(name) != calls:
            raise BenchFailure(f"the {name} side's worker kept {records.get(name)} records "
                               f"for {calls} calls")
    return {"seals": seals, "records": records} if secured else {}
