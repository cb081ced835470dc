"""The transport contract: every test here runs on the in-memory broker AND on real Kafka.

``bus.transport.memory`` claims the broker semantics the mesh relies on; these tests hold every
transport to the same expectations (faststream's model: one suite, several brokers). The
``kafka`` param (aiokafka) and the ``rdkafka`` param (librdkafka) talk to the broker at
``MESH_BOOTSTRAP_SERVERS`` (default 127.0.0.1:9092), ``rdkafka-sasl`` to its SASL_SSL listener,
and each fails, never skips, when it is not there.

A case one backend is known to break carries ``@pytest.mark.deviation(backend, reason=...,
raises=...)``: a strict xfail on that backend only, so the day it is fixed the suite says so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.transport import Reader, Record, Transport
from bus.transport.memory import MemoryBroker, MemoryTransport
from bus.transport.select import kafka_transport
from infra.kafka.local_listeners import local_listeners
from infra.settings import Settings
from localstack.kafka.probe import broker_ready

KAFKA_BOOTSTRAP = os.environ.get("MESH_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
ADMIN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 45.0
READ_TIMEOUT_S = 45.0  # generous: a Kafka group join or rebalance happens inside it
POLL_S = 0.25


def unique(prefix: str) -> str:
    """A fresh name; no dots, so it also works as a service name."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# --- backends ------------------------------------------------------------------------------


class TransportFactory(ABC):
    """Makes transports on one backend (all closed at teardown) and manages its topics."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self._transports: list[Transport] = []

    def settings(self, service_name: str = "contract", **overrides: Any) -> BusSettings:
        return BusSettings(bootstrap_servers=KAFKA_BOOTSTRAP, service_name=service_name,
                           **overrides)

    def __call__(self, service_name: str = "contract") -> Transport:
        """A new transport, as a separate process running ``service_name`` would have."""
        transport = self._make(self.settings(service_name))
        self._transports.append(transport)
        return transport

    @abstractmethod
    def _make(self, settings: BusSettings) -> Transport: ...

    @abstractmethod
    async def create_topic(self, name: str, partitions: int) -> None: ...

    @abstractmethod
    async def delete_topics(self, names: Sequence[str]) -> None: ...

    @abstractmethod
    async def settle_group(self, group_id: str, members: int) -> None:
        """Wait until ``group_id`` has ``members`` members and no rebalance is going on."""

    async def aclose(self) -> None:
        transports, self._transports = self._transports, []
        for transport in transports:
            await asyncio.wait_for(transport.close(), CLOSE_TIMEOUT_S)


class MemoryFactory(TransportFactory):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.broker = MemoryBroker()

    def _make(self, settings: BusSettings) -> Transport:
        return MemoryTransport(self.broker)

    async def create_topic(self, name: str, partitions: int) -> None:
        self.broker.create_topic(name, partitions)

    async def delete_topics(self, names: Sequence[str]) -> None:
        return None  # the broker dies with the test

    async def settle_group(self, group_id: str, members: int) -> None:
        return None  # members share the group's cursor: there is no rebalance to wait for


class KafkaFactory(TransportFactory):
    kind = "kafka"

    def __init__(self, admin: Any) -> None:
        super().__init__()
        self._admin = admin

    @classmethod
    async def connect(cls) -> KafkaFactory:
        host, _, port = KAFKA_BOOTSTRAP.rpartition(":")
        if not broker_ready(host, int(port)):
            pytest.fail(f"no Kafka broker at {KAFKA_BOOTSTRAP}: run 'make test' or "
                        "'.venv/bin/meshgate up' first (contract tests never skip Kafka)")
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
        return cls(admin)

    def _make(self, settings: BusSettings) -> Transport:
        return kafka_transport(settings)

    async def create_topic(self, name: str, partitions: int) -> None:
        response = await asyncio.wait_for(
            self._admin.create_topics([NewTopic(name, partitions, 1)]), ADMIN_TIMEOUT_S
        )
        failed = [entry for entry in response.topic_errors if entry[1] != 0]
        assert not failed, f"creating {name} failed: {failed}"

    async def delete_topics(self, names: Sequence[str]) -> None:
        if names:
            await asyncio.wait_for(self._admin.delete_topics(list(names)), ADMIN_TIMEOUT_S)

    async def settle_group(self, group_id: str, members: int) -> None:
        state: tuple[str, int] = ("unknown", 0)
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                while True:
                    [response] = await self._admin.describe_consumer_groups([group_id])
                    group = response.groups[0]  # (error, id, state, type, protocol, members)
                    state = (str(group[2]), len(group[5]))
                    if state == ("Stable", members):
                        return
                    await asyncio.sleep(POLL_S)  # bounded poll of the broker's view
        except TimeoutError:
            raise AssertionError(f"group {group_id} never settled with {members} members; "
                                 f"last seen {state}") from None

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await asyncio.wait_for(self._admin.close(), CLOSE_TIMEOUT_S)


class RdKafkaFactory(KafkaFactory):
    """The librdkafka transport (``MESH_TRANSPORT=rdkafka``) on the same broker."""

    kind = "rdkafka"

    def settings(self, service_name: str = "contract", **overrides: Any) -> BusSettings:
        return super().settings(service_name, transport="rdkafka", **overrides)


class RdKafkaSaslFactory(KafkaFactory):
    """The librdkafka transport over the broker's SASL_SSL listener (SCRAM-SHA-512, the local
    CA) as its super user (topics and groups are made per test; the ACLs of the service users
    are proved in tests/integration)."""

    kind = "rdkafka-sasl"

    def __init__(self, admin: Any) -> None:
        super().__init__(admin)
        found = local_listeners(Settings.resolve())
        self._secure = found.secure
        self._security = found.scram("admin")

    def settings(self, service_name: str = "contract", **overrides: Any) -> BusSettings:
        return BusSettings(bootstrap_servers=self._secure, service_name=service_name,
                           transport="rdkafka", kafka=self._security, **overrides)


# --- marks ---------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deviation(backend, *, reason, raises=None): the backend breaks this contract case "
        "(a known bug); strict xfail on that backend only",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("transport_factory") if callspec is not None else None
        if backend is None:
            continue
        for mark in item.iter_markers("deviation"):
            if mark.args[0] == backend:
                item.add_marker(pytest.mark.xfail(
                    strict=True, reason=f"{backend} bug: {mark.kwargs['reason']}",
                    raises=mark.kwargs.get("raises"),
                ))


# --- fixtures ------------------------------------------------------------------------------


FACTORIES: dict[str, type[KafkaFactory]] = {"kafka": KafkaFactory, "rdkafka": RdKafkaFactory,
                                            "rdkafka-sasl": RdKafkaSaslFactory}


@pytest.fixture(params=["memory", *(pytest.param(kind, marks=pytest.mark.integration)
                                    for kind in FACTORIES)])
async def transport_factory(request: pytest.FixtureRequest) -> AsyncIterator[TransportFactory]:
    factory = (MemoryFactory() if request.param == "memory"
               else await FACTORIES[request.param].connect())
    try:
        yield factory
    finally:
        await factory.aclose()


class Topics:
    """Uniquely named topics on the test's backend, deleted at teardown."""

    def __init__(self, factory: TransportFactory) -> None:
        self._factory = factory
        self._created: list[str] = []

    async def create(self, partitions: int = 1, *, name: str | None = None) -> str:
        name = name or unique("contract-")
        await self._factory.create_topic(name, partitions)
        self._created.append(name)
        return name

    async def delete_all(self) -> None:
        created, self._created = self._created, []
        await self._factory.delete_topics(created)


@pytest.fixture
async def topics(transport_factory: TransportFactory) -> AsyncIterator[Topics]:
    made = Topics(transport_factory)
    try:
        yield made
    finally:
        await made.delete_all()


class Readers:
    """Starts readers and stops every one of them at teardown (before topics are deleted)."""

    def __init__(self) -> None:
        self._started: list[Reader] = []

    async def start(self, reader: Reader) -> Reader:
        self._started.append(reader)
        await reader.start()
        return reader

    async def stop_all(self) -> None:
        started, self._started = self._started, []
        for reader in reversed(started):
            await asyncio.wait_for(reader.stop(), CLOSE_TIMEOUT_S)


@pytest.fixture
async def readers(topics: Topics) -> AsyncIterator[Readers]:
    made = Readers()
    try:
        yield made
    finally:
        await made.stop_all()


# --- helpers -------------------------------------------------------------------------------


async def read_until(
    reader: Reader,
    done: Callable[[list[Record]], bool],
    *,
    max_records: int = 100,
    commit: bool = False,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[Record]:
    """Read (and optionally commit) batches until ``done(records so far)``, bounded."""
    got: list[Record] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not done(got):
                batch = await reader.read(POLL_S, max_records)
                if commit:
                    await reader.commit(batch)
                got.extend(batch)
    except TimeoutError:
        raise AssertionError(f"after {timeout_s:g}s the reader had only {values(got)}") from None
    return got


async def read_count(reader: Reader, count: int, **options: Any) -> list[Record]:
    return await read_until(reader, lambda got: len(got) >= count, **options)


def values(records: Sequence[Record]) -> list[bytes | None]:
    return [record.value for record in records]
