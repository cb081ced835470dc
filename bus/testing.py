"""An in-process mesh for users' own tests: no Kafka, real workers, real clients.

``MeshTestKit`` creates a ``MemoryBroker`` with the topics the mesh needs (each service's
request topic, the reply topic, the quarantine topic), runs one ``ServiceWorker`` per service
as an owned asyncio task, and hands out ``MeshClient`` callers. Messages are signed and
verified as on the real mesh (fresh Ed25519 keys, one shared key ring; everyone may produce
everywhere unless ``access`` says otherwise). Each worker has a client of its own, so handlers
make nested calls with ``bus.context.mesh_client()`` as they do on the real mesh::

    async with MeshTestKit(services=[orders]) as kit:
        answer = await kit.client("gateway").request("orders.create", order)
        assert kit.worker("orders").handled == 1

In pytest (pytest-asyncio), as a fixture::

    @pytest.fixture
    async def kit() -> AsyncIterator[MeshTestKit]:
        async with mesh_test_kit(orders) as kit:
            yield kit

Leaving the kit closes every client and stops every worker (cancelled if it does not stop
within ``stop_timeout_s``). A worker that crashed is reported: its exception is raised on
exit, or attached as a note to the exception that ended the ``async with`` body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, from_record
from bus.errors import MeshError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.service import Service
from bus.topics import REPLY_TOPIC
from bus.transport import Record
from bus.transport.memory import MemoryBroker, MemoryTransport

__all__ = ["MeshTestKit", "mesh_test_kit"]

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
WAIT_TIMEOUT_S = 5.0


class MeshTestKit:
    """A ``MemoryBroker``, one running ``ServiceWorker`` per service, and callers on it."""

    def __init__(
        self,
        services: Iterable[Service] = (),
        *,
        signed: bool = True,
        access: AccessPolicy | None = None,
        partitions: int = 1,
        topics: Iterable[str] = (),
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        broker: MemoryBroker | None = None,
    ) -> None:
        self.services: dict[str, Service] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"service {service.name!r} given twice")
            self.services[service.name] = service
        self.broker = broker if broker is not None else MemoryBroker()
        self.transport = MemoryTransport(self.broker)
        """A transport of the kit's own, for raw sends and readers in a test."""
        self._signed = signed
        self._access = access if access is not None else AccessPolicy.open()
        self._partitions = partitions
        self._topics = tuple(topics)
        self._request_timeout_s = request_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._keyring = KeyRing()
        self._identities: dict[str, Identity] = {}
        self._workers: dict[str, ServiceWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._clients: list[MeshClient] = []
        self._worker_clients: list[MeshClient] = []
        self._stop = asyncio.Event()
        self._running = False

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> MeshTestKit:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        crashes = await self.stop()
        if not crashes:
            return
        if exc is None:
            raise crashes[0]
        for crash in crashes:
            exc.add_note(f"a mesh test kit worker crashed: {crash!r}")

    async def start(self) -> None:
        """Create the topics and start one worker per service."""
        if self._running:
            raise RuntimeError("the kit is already running")
        topics = [REPLY_TOPIC, QUARANTINE_TOPIC, *self._topics]
        topics += [service.request_topic for service in self.services.values()]
        for topic in topics:
            self.broker.create_topic(topic, self._partitions)
        self._stop.clear()
        self._running = True
        try:
            for name, service in self.services.items():
                # Each worker gets a client of its own (started on a handler's first nested
                # call), which its handlers reach through bus.context.mesh_client().
                nested = MeshClient(MemoryTransport(self.broker), self.settings(name),
                                    self.identity(name))
                self._worker_clients.append(nested)
                # Each worker its own in-memory replay memory (a process's, as on the mesh).
                worker = ServiceWorker(service, MemoryTransport(self.broker),
                                       self.settings(name), self.identity(name), client=nested,
                                       store=MemoryIdempotencyStore())
                self._workers[name] = worker
                self._tasks[name] = asyncio.create_task(worker.run(self._stop),
                                                        name=f"kit:{name}")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> list[BaseException]:
        """Close the clients, stop the workers; returns the exceptions of crashed workers."""
        self._running = False
        clients, self._clients = self._clients, []
        await self._close(clients)
        self._stop.set()
        tasks, self._tasks = self._tasks, {}
        if tasks:
            _, pending = await asyncio.wait(tasks.values(), timeout=self._stop_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self._stop_timeout_s)
        worker_clients, self._worker_clients = self._worker_clients, []
        await self._close(worker_clients)  # after the workers: their handlers may use them
        crashes: list[BaseException] = []
        for name, task in tasks.items():
            if not task.done() or task.cancelled():
                log.warning("the %s worker did not stop in %gs", name, self._stop_timeout_s)
                continue
            error = task.exception()
            if error is not None:
                crashes.append(error)
        return crashes

    async def _close(self, clients: list[MeshClient]) -> None:
        for client in clients:
            try:
                await asyncio.wait_for(client.close(), self._stop_timeout_s)
            except (MeshError, TimeoutError) as exc:  # a client that will not close cleanly
                log.warning("closing a kit client failed: %r", exc)

    # --- participants --------------------------------------------------------------------

    def settings(self, service_name: str) -> BusSettings:
        """The settings a kit participant runs with (never read from the environment)."""
        return BusSettings(service_name=service_name, reply_topic=REPLY_TOPIC,
                           request_timeout_s=self._request_timeout_s)

    def identity(self, service_name: str) -> Identity:
        """``service_name``'s identity: its own signing key, trusted by every participant."""
        identity = self._identities.get(service_name)
        if identity is None:
            if self._signed:
                signing, verify = generate_ed25519(service_name)
                self._keyring.add(verify)
                identity = Identity(service_name, signing, self._keyring, self._access)
            else:
                identity = Identity(service_name, None, None, self._access)
            self._identities[service_name] = identity
        return identity

    def client(self, service_name: str = "caller") -> MeshClient:
        """A caller signed as ``service_name``, with its own transport; closed on exit."""
        if not self._running:
            raise RuntimeError("start the kit (async with) before asking for a client")
        client = MeshClient(MemoryTransport(self.broker), self.settings(service_name),
                            self.identity(service_name))
        self._clients.append(client)
        return client

    @property
    def workers(self) -> Mapping[str, ServiceWorker]:
        return dict(self._workers)

    def worker(self, service_name: str) -> ServiceWorker:
        try:
            return self._workers[service_name]
        except KeyError:
            raise KeyError(f"the kit runs no worker for {service_name!r}") from None

    # --- inspection ----------------------------------------------------------------------

    def records(self, topic: str, partition: int | None = None) -> list[Record]:
        """What sits on ``topic`` (one partition, or all of them in partition order)."""
        if partition is not None:
            return list(self.broker.partition(topic, partition))
        return [record for log_ in self.broker.log(topic) for record in log_]

    def envelopes(self, topic: str) -> list[Envelope]:
        """The records on ``topic`` parsed as mesh envelopes (``EnvelopeError`` if one is not)."""
        return [from_record(record.headers, record.value) for record in self.records(topic)]

    def quarantined(self) -> list[Record]:
        """Records a worker or client refused, with the reason in their headers."""
        return self.records(QUARANTINE_TOPIC)

    async def wait_for_records(
        self, topic: str, count: int, *, timeout_s: float = WAIT_TIMEOUT_S
    ) -> list[Record]:
        """Wait until ``topic`` holds at least ``count`` records; ``TimeoutError`` if not."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while len(records := self.records(topic)) < count:
            remaining = give_up - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{topic} holds {len(records)} of {count} records "
                                   f"after {timeout_s:g}s")
            await self.broker.wait_for_change(remaining)
        return records


@asynccontextmanager
async def mesh_test_kit(
    *services: Service,
    signed: bool = True,
    access: AccessPolicy | None = None,
    partitions: int = 1,
    topics: Iterable[str] = (),
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    broker: MemoryBroker | None = None,
) -> AsyncIterator[MeshTestKit]:
    """``MeshTestKit`` as a context manager to ``yield`` from in a pytest async fixture."""
    kit = MeshTestKit(
        services, signed=signed, access=access, partitions=partitions, topics=topics,
        request_timeout_s=request_timeout_s, stop_timeout_s=stop_timeout_s, broker=broker,
    )
    async with kit:
        yield kit
