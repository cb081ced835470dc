"""Kafka topics from the policies: the plan is pure, the admin calls are a thin adapter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infra.errors import InfraError, NotReachable

ADMIN_TIMEOUT_S = 20.0


class TopicSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Kafka's rule: letters, digits, '.', '_', '-', at most 249, and never '.' or '..'.
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    partitions: int = Field(ge=1, le=1000)
    replication: int = Field(default=1, ge=1)
    config: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_dots(cls, name: str) -> str:
        if name in (".", ".."):
            raise ValueError("Kafka refuses the topic names '.' and '..'")
        return name


class TopicFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    topics: list[TopicSpec]

    @model_validator(mode="after")
    def _unique_names(self) -> TopicFile:
        names = [t.name for t in self.topics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"topics declared more than once: {', '.join(twice)}")
        return self


def load_topics(path: Path) -> list[TopicSpec]:
    data = yaml.safe_load(path.read_text())
    return TopicFile.model_validate(data).topics


@dataclass(frozen=True)
class TopicPlan:
    create: tuple[TopicSpec, ...]
    grow: tuple[tuple[str, int, int], ...]  # name, current partitions, wanted partitions
    cannot_shrink: tuple[tuple[str, int, int], ...]

    @property
    def empty(self) -> bool:
        return not (self.create or self.grow)


def plan_topics(wanted: list[TopicSpec], existing: dict[str, int]) -> TopicPlan:
    """What to change so that the broker has ``wanted``; never deletes or shrinks."""
    create = tuple(spec for spec in wanted if spec.name not in existing)
    grow = tuple(
        (s.name, existing[s.name], s.partitions)
        for s in wanted
        if s.name in existing and existing[s.name] < s.partitions
    )
    shrink = tuple(
        (s.name, existing[s.name], s.partitions)
        for s in wanted
        if s.name in existing and existing[s.name] > s.partitions
    )
    return TopicPlan(create, grow, shrink)


async def _existing(admin: Any) -> dict[str, int]:
    described = await admin.describe_topics()
    return {t["topic"]: len(t["partitions"]) for t in described if not t["topic"].startswith("__")}


async def apply_topics(bootstrap: str, wanted: list[TopicSpec]) -> TopicPlan:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        await asyncio.wait_for(admin.start(), ADMIN_TIMEOUT_S)
    except (TimeoutError, KafkaError) as exc:
        raise NotReachable(
            f"Kafka at {bootstrap} does not answer ({exc!r})",
            "start it with 'localstack/kafka/kafka.sh start' or 'make up'",
        ) from exc
    try:
        plan = plan_topics(wanted, await asyncio.wait_for(_existing(admin), ADMIN_TIMEOUT_S))
        if plan.create:
            new = [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=s.config)
                for s in plan.create
            ]
            await asyncio.wait_for(admin.create_topics(new), ADMIN_TIMEOUT_S)
        if plan.grow:
            grow = {name: NewPartitions(total_count=want) for name, _, want in plan.grow}
            await asyncio.wait_for(admin.create_partitions(grow), ADMIN_TIMEOUT_S)
        return plan
    except KafkaError as exc:
        raise InfraError(f"topic provisioning failed: {exc!r}", "check the broker log") from exc
    finally:
        await admin.close()
