"""A nested call on the real broker: a caller asks orders.quote, whose handler asks
inventory.stock through its worker's mesh client; one trace across the three.

The in-test workers serve a fresh subset of each service (``orders.<subset>.requests``,
``inventory.<subset>.requests``), reached through traffic rules, so that the workers started by
``meshgate up`` (which serve the default subset) never see these requests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.errors import RemoteError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Service
from bus.telemetry.tracing import new_traceparent
from bus.traffic.model import TrafficRules
from bus.traffic.table import TrafficTable
from bus.transport.kafka import KafkaTransport
from functions.inventory.service import inventory, stock_of
from functions.orders.service import list_price, orders
from tests.support import Telemetry, identities

pytestmark = pytest.mark.integration
CALL_TIMEOUT_S = 20.0


@pytest.fixture
async def subset(bootstrap: str) -> AsyncIterator[str]:
    """A fresh subset name with its request topic for orders and inventory, deleted after."""
    name = f"itest{uuid.uuid4().hex[:10]}"
    topics = [f"orders.{name}.requests", f"inventory.{name}.requests"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
        yield name
        await admin.delete_topics(topics)
    finally:
        await admin.close()


def to_subset(subset: str, *operations: str) -> TrafficTable:
    rule = TrafficRules.model_validate({"split": [{"subset": subset, "weight": 100}]})
    return TrafficTable({operation: rule for operation in operations})


async def serve(
    stack: AsyncExitStack, service: Service, settings: BusSettings, identity: Identity,
    subset: str, telemetry: Telemetry, client: MeshClient | None = None,
) -> ServiceWorker:
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, identity, subset=subset,
                           group_id=f"{service.name}.{subset}", client=client,
                           telemetry=telemetry.for_service(service.name),
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def halt() -> None:
        stop.set()
        await asyncio.wait_for(task, 15)
        await transport.close()

    stack.push_async_callback(halt)
    return worker


async def test_quote_asks_inventory_through_the_mesh(subset: str, bus_settings: BusSettings
                                                     ) -> None:
    mesh = identities({
        "caller": ["orders.*", "inventory.*"],
        "orders": ["mesh.replies", f"inventory.{subset}.requests"],
        "inventory": ["mesh.replies"],
    })
    orders_settings = bus_settings.model_copy(update={"service_name": "orders"})
    inventory_settings = bus_settings.model_copy(update={"service_name": "inventory"})
    caller_settings = bus_settings.model_copy(update={"service_name": "caller"})
    telemetry = Telemetry()
    trace = new_traceparent()
    async with AsyncExitStack() as stack:
        nested = MeshClient(KafkaTransport(orders_settings), orders_settings, mesh["orders"],
                            traffic=to_subset(subset, "inventory.stock"),
                            telemetry=telemetry.for_service("orders"))
        stack.push_async_callback(nested.close)
        await asyncio.wait_for(nested.start(), CALL_TIMEOUT_S)
        workers = {
            "inventory": await serve(stack, inventory, inventory_settings, mesh["inventory"],
                                     subset, telemetry),
            "orders": await serve(stack, orders, orders_settings, mesh["orders"], subset,
                                  telemetry, client=nested),
        }
        caller = MeshClient(KafkaTransport(caller_settings), caller_settings, mesh["caller"],
                            traffic=to_subset(subset, "inventory.stock", "orders.quote"),
                            telemetry=telemetry.for_service("caller"))
        stack.push_async_callback(caller.close)

        sku = next(f"sku-{n}" for n in range(1000) if stock_of(f"sku-{n}").available >= 2)
        stock = await caller.request("inventory.stock", {"sku": sku}, timeout_s=CALL_TIMEOUT_S)
        assert stock == stock_of(sku).model_dump()

        quote = await caller.request("orders.quote", {"sku": sku, "quantity": 2},
                                     timeout_s=CALL_TIMEOUT_S, traceparent=trace)
        unit = list_price(sku)
        assert quote == {"sku": sku, "quantity": 2, "unit_price": str(unit),
                         "total": str(unit * 2), "in_stock": True}

        with pytest.raises(RemoteError) as raised:
            await caller.request("orders.quote", {"sku": "missing-sku"},
                                 timeout_s=CALL_TIMEOUT_S)
        assert raised.value.remote_code == "not_found"

        assert workers["orders"].handled == 2
        assert workers["inventory"].handled == 3  # one direct, two nested
        assert workers["orders"].quarantined == workers["inventory"].quarantined == 0
        assert nested.quarantined == 0

    trace_id = int(trace.split("-")[1], 16)
    names = {span.name for span in telemetry.spans.get_finished_spans()
             if span.context is not None and span.context.trace_id == trace_id}
    assert {"orders.quote", f"process orders.{subset}.requests", "inventory.stock",
            f"process inventory.{subset}.requests"} <= names  # one trace, caller to inventory
