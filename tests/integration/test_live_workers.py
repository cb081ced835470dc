"""The worker processes started by ``meshgate up``: inventory.stock, and orders.quote whose
handler asks inventory.stock through the mesh, called as the gateway (its key from the
emulator's Secrets Manager, the keyring and access map ``meshgate up`` wrote)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from bus.config import BusSettings
from bus.errors import RemoteError
from bus.runtime.client import MeshClient
from bus.security.identity import Identity
from bus.security.keys import KeyRing
from bus.transport.kafka import KafkaTransport
from functions.inventory.service import stock_of
from functions.orders.service import list_price
from infra.local import workers as local
from infra.settings import Settings
from tests.support import sender_identity

pytestmark = pytest.mark.integration
CALL_TIMEOUT_S = 20.0


def gateway_identity(settings: Settings) -> Identity:
    sender = sender_identity(settings, "gateway")  # signing key and access map
    keyring_file = settings.local_dir / "identity" / "keyring.json"
    keyring = KeyRing.from_dict(json.loads(keyring_file.read_text()))
    return Identity("gateway", sender.signing_key, keyring, sender.access)


@pytest.fixture
async def gateway(infra_settings: Settings, bootstrap: str) -> AsyncIterator[MeshClient]:
    down = [spec.name for spec in local.workers(infra_settings)
            if spec.name in ("orders", "inventory")
            and local.worker_pid(infra_settings, spec) is None]
    if down:
        pytest.fail(f"workers not running: {', '.join(down)}; run '.venv/bin/meshgate up'")
    identity = await asyncio.to_thread(gateway_identity, infra_settings)
    settings = BusSettings.resolve(bootstrap_servers=bootstrap, service_name="gateway")
    client = MeshClient(KafkaTransport(settings), settings, identity)
    try:
        yield client
    finally:
        await client.close()


async def test_inventory_stock_from_the_live_worker(gateway: MeshClient) -> None:
    answer = await gateway.request("inventory.stock", {"sku": "live-1"},
                                   timeout_s=CALL_TIMEOUT_S)
    assert answer == stock_of("live-1").model_dump()


async def test_orders_quote_asks_the_live_inventory_worker(gateway: MeshClient) -> None:
    sku = "live-2"
    quantity = stock_of(sku).available + 1  # one more than inventory has
    answer = await gateway.request("orders.quote", {"sku": sku, "quantity": quantity},
                                   timeout_s=CALL_TIMEOUT_S)
    unit = list_price(sku)
    assert answer == {"sku": sku, "quantity": quantity, "unit_price": str(unit),
                      "total": str(unit * quantity), "in_stock": False}
    answer = await gateway.request("orders.quote", {"sku": sku}, timeout_s=CALL_TIMEOUT_S)
    assert answer["in_stock"] is (stock_of(sku).available >= 1)


async def test_inventorys_not_found_comes_back_through_orders(gateway: MeshClient) -> None:
    with pytest.raises(RemoteError) as raised:
        await gateway.request("orders.quote", {"sku": "missing-live"},
                              timeout_s=CALL_TIMEOUT_S)
    assert raised.value.remote_code == "not_found"
    assert raised.value.message.startswith("inventory.stock:")
