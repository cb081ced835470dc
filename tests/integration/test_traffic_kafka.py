"""Traffic rules on the real broker: canary split, header routing, mirroring, fault
injection and a circuit that opens and recovers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.delivery.retry import RetryBudget
from bus.envelope import Envelope
from bus.errors import DeadlineExceeded, HandlerError, RemoteError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.service import Payload, Service
from bus.traffic.breaker import CircuitOpen
from bus.traffic.faults import InjectedFault
from bus.traffic.model import TrafficRules
from bus.traffic.table import TrafficTable
from bus.transport.kafka import KafkaTransport
from tests.support import CountingBudget, identities

pytestmark = pytest.mark.integration
SUBSETS = ("", "canary", "shadow")


@pytest.fixture
async def svc(bootstrap: str) -> AsyncIterator[str]:
    """A fresh service name with a request topic per subset."""
    name = f"itest{uuid.uuid4().hex[:10]}"
    topics = [f"{name}.requests", f"{name}.canary.requests", f"{name}.shadow.requests"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
        yield name
        await admin.delete_topics(topics)
    finally:
        await admin.close()


class Counting:
    def __init__(self) -> None:
        self.by_subset: dict[str, list[str]] = {s: [] for s in SUBSETS}
        self.fail = False
        self.slow_shadow = asyncio.Event()


def service_of_subset(name: str, subset: str, seen: Counting) -> Service:
    service = Service(name)

    @service.operation(f"{name}.get")
    async def get(payload: Payload, message: Envelope) -> Payload:
        seen.by_subset[subset].append(str(payload.get("i")))
        if subset == "shadow":
            await seen.slow_shadow.wait()  # the mirror hangs: the caller must not care
        if seen.fail:
            raise HandlerError("unavailable", "backend down", retriable=True)
        return {"subset": subset}

    return service


async def mesh_running(
    stack: AsyncExitStack, name: str, bus_settings: BusSettings, seen: Counting,
    rules: dict[str, Any], *, retry_budget: RetryBudget | None = None,
) -> MeshClient:
    mesh = identities({"caller": [f"{name}.*requests"], name: ["mesh.replies"]})
    for subset in SUBSETS:
        settings = bus_settings.model_copy(update={"service_name": name})
        transport = KafkaTransport(settings)
        worker = ServiceWorker(service_of_subset(name, subset, seen), transport, settings,
                               mesh[name], subset=subset, store=MemoryIdempotencyStore())
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))

        async def halt(stop: asyncio.Event = stop, task: asyncio.Task[None] = task,
                       transport: KafkaTransport = transport) -> None:
            stop.set()
            seen.slow_shadow.set()
            await asyncio.wait_for(task, 15)
            await transport.close()

        stack.push_async_callback(halt)
    caller_settings = bus_settings.model_copy(update={"service_name": "caller",
                                                      "max_attempts": 1})
    table = TrafficTable({f"{name}.get": TrafficRules.model_validate(rules)})
    client = MeshClient(KafkaTransport(caller_settings), caller_settings, caller_of(mesh),
                        traffic=table, retry_budget=retry_budget)
    stack.push_async_callback(client.close)
    return client


def caller_of(mesh: dict[str, Identity]) -> Identity:
    return mesh["caller"]


async def test_canary_split_and_header_routing_on_real_topics(
    svc: str, bus_settings: BusSettings
) -> None:
    seen = Counting()
    rules = {"split": [{"subset": "", "weight": 80}, {"subset": "canary", "weight": 20}],
             "match": [{"header": "x-version", "equals": "v2", "subset": "canary"}]}
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen, rules)
        replies = await asyncio.gather(*(
            client.request(f"{svc}.get", {"i": i}, timeout_s=30) for i in range(300)))
        pinned = await asyncio.gather(*(
            client.request(f"{svc}.get", {"i": f"v2-{i}"}, timeout_s=30,
                           headers={"X-Version": "v2"}) for i in range(20)))
    canary = sum(1 for r in replies if r["subset"] == "canary")
    # 300 draws at 20%: mean 60, sd ~6.9; +-5 sd keeps a correct split from ever failing.
    assert 25 <= canary <= 95, canary
    assert len(seen.by_subset["canary"]) == canary + 20
    assert {r["subset"] for r in pinned} == {"canary"}
    assert len(seen.by_subset[""]) == 300 - canary


async def test_mirror_is_never_waited_for(svc: str, bus_settings: BusSettings) -> None:
    seen = Counting()
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen,
                                    {"mirror": {"subset": "shadow", "percent": 100}})
        replies = await asyncio.gather(*(
            client.request(f"{svc}.get", {"i": i}, timeout_s=30) for i in range(10)))
        async with asyncio.timeout(20):  # the shadow got its copies (and is still stuck)
            while len(seen.by_subset["shadow"]) < 10:  # noqa: ASYNC110 - worker counters
                await asyncio.sleep(0.05)
        assert client.mirrored == 10
    assert [r["subset"] for r in replies] == [""] * 10


async def test_injected_abort_surfaces_as_its_error(svc: str, bus_settings: BusSettings
                                                    ) -> None:
    seen = Counting()
    rules = {"faults": {"abort_percent": 100, "abort_code": "chaos", "abort_retriable": False}}
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen, rules)
        with pytest.raises(InjectedFault) as raised:
            await client.request(f"{svc}.get", {"i": 1}, timeout_s=10)
    assert raised.value.fault_code == "chaos"
    assert seen.by_subset[""] == []  # aborted before anything was sent


async def test_open_circuit_fails_fast_then_recovers(svc: str, bus_settings: BusSettings
                                                     ) -> None:
    seen = Counting()
    # Only the consecutive-failure rule here (the rate rule has its own unit tests).
    rules = {"circuit_breaker": {"consecutive_failures": 3, "open_ms": 1500,
                                 "failure_rate_percent": 100, "min_calls": 10, "window": 10}}
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen, rules)
        assert (await client.request(f"{svc}.get", {"i": 0}, timeout_s=20))["subset"] == ""
        seen.fail = True
        for i in range(3):
            with pytest.raises(RemoteError):
                await client.request(f"{svc}.get", {"i": i}, timeout_s=20)
        handled = len(seen.by_subset[""])
        with pytest.raises(CircuitOpen):
            await client.request(f"{svc}.get", {"i": "blocked"}, timeout_s=20)
        assert len(seen.by_subset[""]) == handled  # refused without touching the service
        seen.fail = False
        await asyncio.sleep(1.6)  # past open_ms: one trial call is let through
        assert (await client.request(f"{svc}.get", {"i": "trial"}, timeout_s=20)
                )["subset"] == ""
        assert (await client.request(f"{svc}.get", {"i": "after"}, timeout_s=20)
                )["subset"] == ""


async def test_open_circuit_costs_no_retry_sleep_or_budget(svc: str, bus_settings: BusSettings
                                                          ) -> None:
    """Counted, not timed: each retry spends a budget unit before its backoff sleep."""
    seen, budget = Counting(), CountingBudget()
    rules = {"circuit_breaker": {"consecutive_failures": 2, "open_ms": 60_000,
                                 "min_calls": 100, "window": 100},
             "retry": {"max_attempts": 4, "base_ms": 20, "cap_ms": 100}}
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen, rules, retry_budget=budget)
        seen.fail = True
        # Attempt 1 fails, one retry, attempt 2 fails and opens the circuit for 60 s: the
        # third attempt would be refused, so it is not made and the service's error is raised.
        with pytest.raises(RemoteError):
            await client.request(f"{svc}.get", {"i": 0}, timeout_s=20)
        assert (len(seen.by_subset[""]), budget.requests, budget.spent) == (2, 1, 1)
        for i in range(1, 6):
            with pytest.raises(CircuitOpen) as refused:
                await client.request(f"{svc}.get", {"i": i}, timeout_s=20)
            assert 0 < refused.value.retry_after_ms <= 60_000
        # Five blocked calls: nothing sent, no request counted, no retry (so no sleep).
        assert (len(seen.by_subset[""]), budget.requests, budget.spent) == (2, 1, 1)


async def test_rule_timeout_caps_the_call(svc: str, bus_settings: BusSettings) -> None:
    seen = Counting()
    async with AsyncExitStack() as stack:
        client = await mesh_running(stack, svc, bus_settings, seen,
                                    {"split": [{"subset": "shadow", "weight": 100}],
                                     "timeout_ms": 500})
        with pytest.raises(DeadlineExceeded):
            await client.request(f"{svc}.get", {"i": 1}, timeout_s=30)
