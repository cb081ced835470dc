"""Topic plan/apply against the real broker: every test works under its own topic prefix,
deleted afterwards, and deletes only under that prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra.errors import InfraError
from infra.kafka.topics import TopicPlan, TopicSpec, apply, plan
from infra.settings import Settings

pytestmark = pytest.mark.integration


CREATED_VISIBLE_S = 10.0


class Broker:
    """Out-of-band access to the broker, to set the scene and to check what apply did."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def _admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        return admin

    def create(self, name: str, partitions: int, **configs: str) -> None:
        async def run() -> None:
            admin = await self._admin()
            try:
                response = await admin.create_topics(
                    [NewTopic(name, partitions, 1, topic_configs=configs)]
                )
                assert [e[1] for e in response.topic_errors] == [0]
                # The controller answers before the broker's metadata lists the topic (longer
                # on a busy machine): the scene is set once the topic can be seen.
                async with asyncio.timeout(CREATED_VISIBLE_S):
                    while name not in await admin.list_topics():  # noqa: ASYNC110 - polls the broker
                        await asyncio.sleep(0.05)
            finally:
                await admin.close()

        asyncio.run(run())

    def partitions(self) -> dict[str, int]:
        async def run() -> dict[str, int]:
            admin = await self._admin()
            try:
                return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
            finally:
                await admin.close()

        return asyncio.run(run())

    def overrides(self, name: str) -> dict[str, str]:
        """The topic's own (non-default) configs."""

        async def run() -> dict[str, str]:
            admin = await self._admin()
            try:
                [response] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name)]
                )
                [resource] = response.to_object()["resources"]
                return {
                    e["config_names"]: e["config_value"]
                    for e in resource["config_entries"]
                    if e["config_source"] == 1
                }
            finally:
                await admin.close()

        return asyncio.run(run())

    def delete_under(self, prefix: str) -> None:
        async def run() -> None:
            admin = await self._admin()
            try:
                names = [n for n in await admin.list_topics() if n.startswith(prefix)]
                if names:
                    await admin.delete_topics(names)
            finally:
                await admin.close()

        asyncio.run(run())


@pytest.fixture
def broker(bootstrap: str) -> Broker:
    return Broker(bootstrap)


@pytest.fixture
def prefix(broker: Broker) -> Iterator[str]:
    """A fresh topic prefix; every topic under it is deleted afterwards."""
    name = f"itp{uuid.uuid4().hex[:10]}."
    yield name
    broker.delete_under(name)


def _spec(name: str, partitions: int, **config: str) -> TopicSpec:
    return TopicSpec(
        name=name, partitions=partitions, config={k.replace("_", "."): v for k, v in config.items()}
    )


def _mine(names: tuple[str, ...], prefix: str) -> list[str]:
    return [n for n in names if n.startswith(prefix)]


def test_create_then_the_plan_is_empty(infra_settings: Settings, broker: Broker,
                                       prefix: str) -> None:
    wanted = [
        _spec(f"{prefix}requests", 6, retention_ms="86400000"),
        _spec(f"{prefix}compacted", 1, cleanup_policy="compact", min_insync_replicas="1"),
    ]
    first = plan(infra_settings, wanted, managed_prefixes=[prefix])
    assert first.render(unmanaged=False) == "\n".join([
        f"+ create {prefix}requests (6 partitions, retention.ms=86400000)",
        f"+ create {prefix}compacted (1 partition, cleanup.policy=compact, "
        "min.insync.replicas=1)",
    ])
    assert apply(infra_settings, first) == [
        f"+ created {prefix}requests (6 partitions, retention.ms=86400000)",
        f"+ created {prefix}compacted (1 partition, cleanup.policy=compact, "
        "min.insync.replicas=1)",
    ]
    assert broker.partitions()[f"{prefix}requests"] == 6
    assert broker.overrides(f"{prefix}requests") == {"retention.ms": "86400000"}
    assert broker.overrides(f"{prefix}compacted") == {
        "cleanup.policy": "compact", "min.insync.replicas": "1",
    }
    second = plan(infra_settings, wanted, managed_prefixes=[prefix])
    assert second.empty
    assert second.render(unmanaged=False) == "empty"
    assert apply(infra_settings, second) == []


def test_retention_and_partitions_drift_is_planned_and_applied(
    infra_settings: Settings, broker: Broker, prefix: str
) -> None:
    name = f"{prefix}replies"
    # An override nobody declares: a full AlterConfigs would drop it unless apply resends it.
    broker.create(name, 6, **{"retention.ms": "3600000", "max.message.bytes": "2097152"})
    wanted = [_spec(name, 8, retention_ms="7200000")]

    drift = plan(infra_settings, wanted, managed_prefixes=[prefix])
    assert drift.render(unmanaged=False) == "\n".join([
        f"~ {name}: partitions 6 -> 8",
        f"~ {name}: retention.ms 3600000 -> 7200000",
    ])
    assert apply(infra_settings, drift) == [
        f"~ {name}: partitions 6 -> 8",
        f"~ {name}: retention.ms 3600000 -> 7200000",
    ]
    assert broker.partitions()[name] == 8
    assert broker.overrides(name) == {"retention.ms": "7200000", "max.message.bytes": "2097152"}
    assert plan(infra_settings, wanted, managed_prefixes=[prefix]).empty


def test_a_default_value_becomes_an_override(infra_settings: Settings, broker: Broker,
                                             prefix: str) -> None:
    name = f"{prefix}quarantine"
    broker.create(name, 1)
    wanted = [_spec(name, 1, compression_type="zstd")]
    drift = plan(infra_settings, wanted, managed_prefixes=[prefix])
    # The broker's default for compression.type is "producer".
    assert drift.changes() == [f"~ {name}: compression.type producer (default) -> zstd"]
    apply(infra_settings, drift)
    assert broker.overrides(name) == {"compression.type": "zstd"}
    assert plan(infra_settings, wanted, managed_prefixes=[prefix]).empty


def test_shrinking_is_refused_with_a_clear_message(infra_settings: Settings, broker: Broker,
                                                   prefix: str) -> None:
    name = f"{prefix}big"
    broker.create(name, 6)
    shrink = plan(infra_settings, [_spec(name, 3)], managed_prefixes=[prefix])
    assert shrink.empty
    assert shrink.cannot_shrink == ((name, 6, 3),)
    assert shrink.render(unmanaged=False).splitlines() == [
        "empty",
        f"! cannot shrink {name} from 6 to 3 partitions (Kafka never removes partitions; "
        "recreate the topic to shrink it)",
    ]
    assert apply(infra_settings, shrink) == []
    assert broker.partitions()[name] == 6
    # Forcing it anyway: the broker's refusal comes back as one InfraError line.
    with pytest.raises(InfraError) as caught:
        apply(infra_settings, TopicPlan((), ((name, 6, 3),), ()))
    assert "\n" not in str(caught.value)
    assert f"add partitions to {name} failed: InvalidPartitionsError" in str(caught.value)
    assert broker.partitions()[name] == 6


def test_replication_changes_are_reported_not_supported(infra_settings: Settings,
                                                        broker: Broker, prefix: str) -> None:
    name = f"{prefix}replicated"
    broker.create(name, 1)
    wanted = [TopicSpec(name=name, partitions=1, replication=3)]
    result = plan(infra_settings, wanted, managed_prefixes=[prefix])
    assert result.empty
    assert result.notes(unmanaged=False) == [
        f"! {name}: replication factor 1 -> 3 is not supported "
        "(reassign the partitions with kafka-reassign-partitions.sh)"
    ]


def test_unmanaged_topics_are_deleted_only_with_allow_delete(
    infra_settings: Settings, broker: Broker, prefix: str
) -> None:
    keep, old = f"{prefix}keep", f"{prefix}old"
    retry = f"{keep}.retry.1"
    broker.create(keep, 1)
    broker.create(old, 2)
    broker.create(retry, 1)
    wanted = [_spec(keep, 1)]

    listed = plan(infra_settings, wanted, managed_prefixes=[prefix])
    assert listed.empty
    assert listed.delete == ()
    assert _mine(listed.unmanaged, prefix) == [retry, old]
    assert f"? unmanaged {old} (not declared; kept; allow_delete would delete it)" in (
        listed.notes()
    )
    assert apply(infra_settings, listed) == []
    assert old in broker.partitions()

    deleting = plan(infra_settings, wanted, allow_delete=True, managed_prefixes=[prefix])
    assert deleting.delete == (old,)
    assert deleting.changes() == [f"- delete {old}"]
    assert _mine(deleting.unmanaged, prefix) == [retry]
    assert apply(infra_settings, deleting) == [f"- deleted {old}"]
    now = broker.partitions()
    assert old not in now
    assert keep in now
    assert retry in now
    assert plan(infra_settings, wanted, allow_delete=True, managed_prefixes=[prefix]).empty


def test_allow_delete_never_reaches_outside_the_managed_prefixes(
    infra_settings: Settings, broker: Broker, prefix: str
) -> None:
    mine, other = f"{prefix}a", f"{prefix}other.x"
    broker.create(mine, 1)
    broker.create(other, 1)
    result = plan(infra_settings, [_spec(mine, 1)], allow_delete=True,
                  managed_prefixes=[f"{prefix}nothing."])
    assert result.empty
    assert result.protected[other] == "outside the managed prefixes"
    assert not any(n.startswith("__") for n in result.unmanaged)


def test_a_bad_config_is_refused_in_one_line(infra_settings: Settings, broker: Broker,
                                             prefix: str) -> None:
    name = f"{prefix}bad"
    bad = plan(infra_settings, [_spec(name, 1, retention_ms="soon")], managed_prefixes=[prefix])
    with pytest.raises(InfraError) as caught:
        apply(infra_settings, bad)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Kafka refused to create {name}: InvalidConfigurationError: ")
    assert "retention.ms" in message
    assert name not in broker.partitions()
