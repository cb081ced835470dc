"""The Kafka admin adapter of ``infra.kafka.topics``: live topics in, changes out, over aiokafka's
``AIOKafkaAdminClient``.

Every call is bounded (``timeout_s``) and every failure leaves as one ``InfraError`` line
naming the operation, the topic and the broker's reason. Broker answers that carry
per-topic error codes (CreateTopics, DeleteTopics, AlterConfigs, DescribeConfigs) are
checked here, since aiokafka returns them without raising.

aiokafka 0.14 has no IncrementalAlterConfigs: ``replace_configs`` sends a full AlterConfigs,
which replaces every topic-level override of the topic with the set it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from infra.errors import KafkaAdminFailed
from infra.kafka.admin_connection import (
    REQUEST_TIMEOUT_MS,
    AdminConnection,
)

SETTLE_TIMEOUT_S = 5.0
"""How long a topic may report a transient metadata error (leader election) before it is
an error."""
SETTLE_POLL_S = 0.2

# DescribeConfigs v1+ ``config_source``: an override set on the topic itself. Everything
# else (broker static or dynamic defaults, Kafka's defaults) is a default for the topic.
DYNAMIC_TOPIC_CONFIG = 1

T = TypeVar("T")


class TopicShape(Protocol):
    """What creating a topic needs (``infra.kafka.topics.TopicSpec`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def replication(self) -> int: ...
    @property
    def config(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class LiveTopic:
    """A topic as the broker shows it."""

    name: str
    partitions: int
    replication: int | None = None
    """Replicas per partition (the largest count over the partitions); None when unknown."""
    configs: Mapping[str, str] | None = None
    """The topic's own overrides (non-default configs); None when they were not read."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    """The values the topic inherits for the configs it does not override (for display)."""
    internal: bool = False


def _reason(code: int, message: str | None) -> str:
    cls = for_code(code)
    text = message or str(getattr(cls, "description", "")) or "no reason given"
    return f"{cls.__name__}: {text}"


class TopicAdmin(AdminConnection):
    """``async with TopicAdmin(bootstrap) as admin:`` one admin connection, closed on exit
    (``infra.kafka.admin_connection``: how it connects and fails)."""

    client_id = "meshgate-topics"
    start_what = "start the admin client"

    async def _call(self, what: str, fix: str, call: Awaitable[T]) -> T:
        return await self._bounded(what, fix, call)

    @staticmethod
    def _refused(what: str, fix: str, errors: Iterable[tuple[str, int, str | None]]) -> None:
        failed = [(name, code, message) for name, code, message in errors if code]
        if failed:
            reasons = "; ".join(f"{what} {name}: {_reason(code, m)}" for name, code, m in failed)
            retriable = all(for_code(code).retriable for _, code, _ in failed)
            raise KafkaAdminFailed(f"Kafka refused to {reasons}", fix, retriable=retriable)

    # -- reading --------------------------------------------------------------------------

    async def topics(self, settled: Iterable[str] = ()) -> dict[str, LiveTopic]:
        """Every topic on the broker with its partition count and replication (no configs).

        Always asks for all topics (a metadata request naming a topic can create it on a
        broker with ``auto.create.topics.enable``). Waits up to ``SETTLE_TIMEOUT_S`` while a
        topic named in ``settled`` reports a transient error (a leader being elected)."""
        wait_for = set(settled)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SETTLE_TIMEOUT_S
        while True:
            described: list[dict[str, Any]] = await self._call(
                "describe topics", "check the broker log", self._client.describe_topics()
            )
            unsettled = {
                t["topic"]: int(t["error_code"])
                for t in described
                if t["topic"] in wait_for and t["error_code"]
            }
            if not unsettled:
                break
            if loop.time() >= give_up:
                self._refused(
                    "describe topics",
                    "check the broker log; the topic has no leader",
                    ((name, code, None) for name, code in sorted(unsettled.items())),
                )
            await asyncio.sleep(SETTLE_POLL_S)
        live: dict[str, LiveTopic] = {}
        for t in described:
            if t["error_code"] == 3:  # listed while being deleted
                continue
            partitions = t["partitions"]
            live[t["topic"]] = LiveTopic(
                name=t["topic"],
                partitions=len(partitions),
                replication=max((len(p["replicas"]) for p in partitions), default=None),
                internal=bool(t.get("is_internal", False)),
            )
        return live

    async def configs(
        self, names: Sequence[str]
    ) -> dict[str, tuple[dict[str, str | None], dict[str, str]]]:
        """For each topic: its overrides (a sensitive value is None) and its defaults."""
        if not names:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses: list[Any] = await self._call(
            "describe configs", "check the broker log", self._client.describe_configs(resources)
        )
        found: dict[str, tuple[dict[str, str | None], dict[str, str]]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                name = resource["resource_name"]
                self._refused(
                    "describe the configs of",
                    "check that the topic exists (run the plan again)",
                    [(name, int(resource["error_code"]), resource["error_message"])],
                )
                overrides: dict[str, str | None] = {}
                defaults: dict[str, str] = {}
                for entry in resource["config_entries"]:
                    key, value = entry["config_names"], entry["config_value"]
                    if "config_source" in entry:
                        overridden = entry["config_source"] == DYNAMIC_TOPIC_CONFIG
                    else:  # DescribeConfigs v0
                        overridden = not entry["is_default"]
                    if overridden:
                        overrides[key] = None if entry["is_sensitive"] else value
                    elif value is not None:
                        defaults[key] = value
                found[name] = (overrides, defaults)
        return found

    async def live(self, with_configs: Iterable[str] = ()) -> dict[str, LiveTopic]:
        """Every topic; the configs too of those in ``with_configs`` that exist."""
        wanted = set(with_configs)
        topics = await self.topics(settled=wanted)
        present = sorted(wanted & topics.keys())
        for name, (overrides, defaults) in (await self.configs(present)).items():
            known = {k: v for k, v in overrides.items() if v is not None}
            topics[name] = LiveTopic(
                name=name,
                partitions=topics[name].partitions,
                replication=topics[name].replication,
                configs=known,
                defaults=defaults,
                internal=topics[name].internal,
            )
        return topics

    # -- changing -------------------------------------------------------------------------

    async def create(self, topics: Sequence[TopicShape]) -> None:
        if not topics:
            return
        new = [
            NewTopic(t.name, t.partitions, t.replication, topic_configs=dict(t.config))
            for t in topics
        ]
        response = await self._call(
            "create topics",
            "fix the topic in the policies",
            self._client.create_topics(new, timeout_ms=REQUEST_TIMEOUT_MS),
        )
        self._refused(
            "create",
            "fix the topic in the policies (or run the plan again if it exists now)",
            [
                (e["topic"], int(e["error_code"]), e.get("error_message"))
                for e in response.to_object()["topic_errors"]
            ],
        )

    async def grow(self, partitions: Mapping[str, int]) -> None:
        """Raise each topic's partition count to the given total."""
        if not partitions:
            return
        counts = {name: NewPartitions(total_count=n) for name, n in partitions.items()}
        await self._call(
            f"add partitions to {', '.join(sorted(partitions))}",
            "run the plan again: the topic changed since it was planned",
            self._client.create_partitions(counts, timeout_ms=REQUEST_TIMEOUT_MS),
        )

    async def replace_configs(self, name: str, configs: Mapping[str, str]) -> None:
        """Make ``configs`` the complete set of ``name``'s overrides (AlterConfigs)."""
        resource = ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))
        responses: list[Any] = await self._call(
            f"alter the configs of {name}",
            "fix the value in the policies",
            self._client.alter_configs([resource]),
        )
        self._refused(
            "alter the configs of",
            "fix the value in the policies",
            [
                (r["resource_name"], int(r["error_code"]), r["error_message"])
                for response in responses
                for r in response.to_object()["resources"]
            ],
        )

    async def delete(self, names: Sequence[str]) -> None:
        if not names:
            return
        response = await self._call(
            "delete topics",
            "check the broker log",
            self._client.delete_topics(list(names), timeout_ms=REQUEST_TIMEOUT_MS),
        )
        self._refused(
            "delete",
            "run the plan again (the topic may be gone already)",
            [
                (e["topic"], int(e["error_code"]), None)
                for e in response.to_object()["topic_error_codes"]
            ],
        )
