"""``meshgate tail``'s view of per-pair MACs against the deployed stack: it reads a receiver's
signing key from the stack's Secrets Manager (the emulator) and verifies a MAC sealed for it
with the stack's real keys; a changed record is FORGED; a receiver whose secret it cannot read
leaves the MAC ``sealed`` and says so."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus.envelope import ReplyTo, new_request, now_ms
from bus.policy.model import Policy, Service
from bus.security.pair_mac import PairKeys
from infra.cli.tail.cli import load_keyring, load_pair_keys
from infra.cli.tail.match import FORGED, SEALED, VERIFIED, check_signature
from infra.keys.mesh_keys import read_secret
from infra.policy import load_policy
from infra.settings import Settings

pytestmark = pytest.mark.e2e
TOPIC = "orders.requests"


def accepting(policy: Policy, **services: Service) -> Policy:
    """``policy`` with orders accepting pair MACs, plus ``services``."""
    orders = policy.services["orders"].model_copy(update={"message_auth": "pair-mac"})
    return policy.model_copy(update={"services": {**policy.services, "orders": orders,
                                                  **services}})


def test_tail_checks_a_pair_mac_with_the_receivers_secret_from_the_stack(
        endpoint: str, settings: Settings) -> None:
    policy = load_policy(settings.root / "policies")
    ring = load_keyring(settings)
    gateway = read_secret(settings, "gateway").current
    orders = read_secret(settings, "orders").current.verify_key("orders")
    request = new_request(source="gateway", operation="orders.create", value=b'{"a":1}',
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 5_000)
    sealed = PairKeys([gateway]).seal(request, TOPIC, gateway, orders)

    notes: list[str] = []
    operator = load_pair_keys(settings, accepting(policy), notes.append)
    assert notes == []
    assert check_signature(sealed, TOPIC, ring, operator) == (VERIFIED, None)
    assert check_signature(replace(sealed, value=b'{"a":2}'), TOPIC, ring, operator) == (
        FORGED, "bad_signature")

    # A second receiver whose secret does not exist: orders' MACs still open, the line says
    # which service's records stay sealed.
    partial = load_pair_keys(settings, accepting(policy, ghost=Service(message_auth="pair-mac")),
                             notes.append)
    assert check_signature(sealed, TOPIC, ring, partial) == (VERIFIED, None)
    assert len(notes) == 1
    assert "ghost" in notes[0]
    assert "sealed" in notes[0]
    assert check_signature(sealed, TOPIC, ring, None) == (SEALED, None)
