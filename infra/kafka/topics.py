"""Kafka topics from the policies: the plan is pure, the admin calls are a thin adapter
(``infra.kafka.topic_admin``).

``plan_topics`` compares the declared topics with the broker's: topics to create,
partitions to add, declared configs that differ from the topic's own overrides, and the
topics nobody declared ("unmanaged", deleted only on request and only under a managed
prefix). Impossible changes (fewer partitions, another replication factor) are reported,
never attempted. ``plan`` and ``apply`` run it against the live broker; ``meshgate policy
plan`` / ``apply`` print ``TopicPlan.render()`` and the lines ``apply`` returns.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infra.errors import InfraError
from infra.kafka.admin_connection import ADMIN_TIMEOUT_S
from infra.kafka.topic_admin import LiveTopic, TopicAdmin
from infra.settings import Settings

__all__ = [
    "ADMIN_TIMEOUT_S",
    "ConfigChange",
    "LiveTopic",
    "TopicPlan",
    "TopicSpec",
    "apply",
    "apply_plan",
    "apply_topics",
    "default_prefixes",
    "pending",
    "plan",
    "plan_live",
    "plan_topics",
]

INTERNAL_PREFIX = "__"
"""Kafka's own topics (``__consumer_offsets``, ...): never listed, never touched."""
SETTLE_TIMEOUT_S = 15.0
"""How long ``apply`` waits for the broker to show what it changed."""
SETTLE_POLL_S = 0.2


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


@dataclass(frozen=True)
class ConfigChange:
    """A declared config whose value differs from the topic's own override."""

    topic: str
    key: str
    old: str | None
    """The topic's override; None when the topic inherits the default."""
    new: str
    default: str | None = None
    """The inherited value when ``old`` is None (for display only)."""

    def describe(self) -> str:
        if self.old is not None:
            was = self.old
        elif self.default is not None:
            was = f"{self.default} (default)"
        else:
            was = "(default)"
        return f"{self.topic}: {self.key} {was} -> {self.new}"


@dataclass(frozen=True)
class TopicPlan:
    """What to change so that the broker has the declared topics.

    ``create``, ``grow``, ``reconfigure`` and ``delete`` are the changes ``apply`` makes;
    ``cannot_shrink`` and ``replication`` are impossible changes (reported, never tried);
    ``unmanaged`` are undeclared topics left alone, ``protected`` says why those that
    ``allow_delete`` would not delete either are kept."""

    create: tuple[TopicSpec, ...]
    grow: tuple[tuple[str, int, int], ...]  # name, current partitions, wanted partitions
    cannot_shrink: tuple[tuple[str, int, int], ...]  # name, current, declared
    reconfigure: tuple[ConfigChange, ...] = ()
    delete: tuple[str, ...] = ()
    unmanaged: tuple[str, ...] = ()
    protected: Mapping[str, str] = field(default_factory=dict)  # unmanaged name -> reason
    replication: tuple[tuple[str, int, int], ...] = ()  # name, current, declared

    @property
    def empty(self) -> bool:
        """Nothing to apply (impossible changes and unmanaged topics do not count)."""
        return not (self.create or self.grow or self.reconfigure or self.delete)

    @property
    def impossible(self) -> tuple[str, ...]:
        """One message per declared change Kafka cannot make."""
        return (
            *(
                f"cannot shrink {name} from {have} to {want} partitions "
                "(Kafka never removes partitions; recreate the topic to shrink it)"
                for name, have, want in self.cannot_shrink
            ),
            *(
                f"{name}: replication factor {have} -> {want} is not supported "
                "(reassign the partitions with kafka-reassign-partitions.sh)"
                for name, have, want in self.replication
            ),
        )

    def changes(self) -> list[str]:
        """The changes, one line each: ``+`` create, ``~`` change, ``-`` delete."""
        return [
            *(f"+ create {_created(spec)}" for spec in self.create),
            *(f"~ {name}: partitions {have} -> {want}" for name, have, want in self.grow),
            *(f"~ {change.describe()}" for change in self.reconfigure),
            *(f"- delete {name}" for name in self.delete),
        ]

    def notes(self, *, unmanaged: bool = True) -> list[str]:
        """``!`` impossible changes, then (if asked) ``?`` unmanaged topics."""
        lines = [f"! {message}" for message in self.impossible]
        if unmanaged:
            for name in self.unmanaged:
                why = self.protected.get(name)
                kept = f"kept: {why}" if why else "kept; allow_delete would delete it"
                lines.append(f"? unmanaged {name} (not declared; {kept})")
        return lines

    def render(self, *, unmanaged: bool = True) -> str:
        """The plan as text, like Terraform's; ``empty`` first when there is nothing to do."""
        return "\n".join([*(self.changes() or ["empty"]), *self.notes(unmanaged=unmanaged)])

    def __str__(self) -> str:
        return self.render()


def _settings_text(config: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={config[key]}" for key in sorted(config))


def _created(spec: TopicSpec) -> str:
    parts = [f"{spec.partitions} partition{'s' if spec.partitions != 1 else ''}"]
    if spec.replication != 1:
        parts.append(f"replication {spec.replication}")
    if spec.config:
        parts.append(_settings_text(spec.config))
    return f"{spec.name} ({', '.join(parts)})"


def default_prefixes(wanted: Sequence[TopicSpec]) -> tuple[str, ...]:
    """The managed prefixes implied by the declared names: ``orders.requests`` -> ``orders.``.
    A name without a dot implies none."""
    return tuple(sorted({s.name.split(".", 1)[0] + "." for s in wanted if "." in s.name}))


def _is_internal(topic: LiveTopic) -> bool:
    return topic.internal or topic.name.startswith(INTERNAL_PREFIX)


def _protection(name: str, declared: Sequence[str], prefixes: Sequence[str]) -> str | None:
    """Why ``allow_delete`` must not delete the undeclared topic ``name`` (None: it may)."""
    parent = next((d for d in declared if name.startswith(d + ".")), None)
    if parent is not None:
        return f"derived from the declared {parent} (retry or dead-letter topic)"
    if not any(name.startswith(prefix) for prefix in prefixes):
        return "outside the managed prefixes"
    return None


def plan_topics(
    wanted: Sequence[TopicSpec],
    existing: Mapping[str, int | LiveTopic],
    *,
    allow_delete: bool = False,
    managed_prefixes: Sequence[str] | None = None,
) -> TopicPlan:
    """What to change so that the broker has ``wanted`` (pure).

    ``existing`` maps each topic on the broker to its partition count or to a ``LiveTopic``
    (configs and replication are compared only when known). Never shrinks. Deletes only
    with ``allow_delete``, only topics under one of ``managed_prefixes`` (by default those
    of the declared names, see ``default_prefixes``), never Kafka's internal topics and
    never a topic derived from a declared one (``<declared>.retry.1``, ``<declared>.dlt``)."""
    twice = sorted(name for name, n in Counter(s.name for s in wanted).items() if n > 1)
    if twice:
        raise ValueError(f"topics declared more than once: {', '.join(twice)}")
    prefixes = default_prefixes(wanted) if managed_prefixes is None else tuple(managed_prefixes)
    for prefix in prefixes:
        if not prefix or prefix.startswith(INTERNAL_PREFIX):
            raise ValueError(f"managed prefix {prefix!r} would cover every or internal topics")
    live = {
        name: value if isinstance(value, LiveTopic) else LiveTopic(name=name, partitions=value)
        for name, value in existing.items()
    }
    create: list[TopicSpec] = []
    grow: list[tuple[str, int, int]] = []
    shrink: list[tuple[str, int, int]] = []
    reconfigure: list[ConfigChange] = []
    replication: list[tuple[str, int, int]] = []
    for spec in wanted:
        topic = live.get(spec.name)
        if topic is None:
            create.append(spec)
            continue
        if topic.partitions < spec.partitions:
            grow.append((spec.name, topic.partitions, spec.partitions))
        elif topic.partitions > spec.partitions:
            shrink.append((spec.name, topic.partitions, spec.partitions))
        if topic.replication is not None and topic.replication != spec.replication:
            replication.append((spec.name, topic.replication, spec.replication))
        if topic.configs is not None:
            for key in sorted(spec.config):
                old = topic.configs.get(key)
                if old != spec.config[key]:
                    default = topic.defaults.get(key) if old is None else None
                    reconfigure.append(ConfigChange(spec.name, key, old, spec.config[key], default))
    declared = [s.name for s in wanted]
    delete: list[str] = []
    unmanaged: list[str] = []
    protected: dict[str, str] = {}
    for name in sorted(set(live) - set(declared)):
        if _is_internal(live[name]):
            continue
        why = _protection(name, declared, prefixes)
        if allow_delete and why is None:
            delete.append(name)
            continue
        unmanaged.append(name)
        if why is not None:
            protected[name] = why
    return TopicPlan(
        create=tuple(create),
        grow=tuple(grow),
        cannot_shrink=tuple(shrink),
        reconfigure=tuple(reconfigure),
        delete=tuple(delete),
        unmanaged=tuple(unmanaged),
        protected=protected,
        replication=tuple(replication),
    )


def pending(plan: TopicPlan, live: Mapping[str, LiveTopic]) -> list[str]:
    """The planned changes the broker does not show yet (empty once it shows them all)."""
    waiting: list[str] = []
    for spec in plan.create:
        topic = live.get(spec.name)
        if topic is None or topic.partitions < spec.partitions or (
            topic.configs is not None
            and any(topic.configs.get(k) != v for k, v in spec.config.items())
        ):
            waiting.append(f"create {spec.name}")
    for name, _, want in plan.grow:
        if name not in live or live[name].partitions < want:
            waiting.append(f"{name}: partitions -> {want}")
    for change in plan.reconfigure:
        configs = live[change.topic].configs if change.topic in live else None
        if configs is None or configs.get(change.key) != change.new:
            waiting.append(f"{change.topic}: {change.key} -> {change.new}")
    waiting.extend(f"delete {name}" for name in plan.delete if name in live)
    return waiting


# -- against the live broker -------------------------------------------------------------


async def plan_live(
    bootstrap: str,
    wanted: Sequence[TopicSpec],
    *,
    allow_delete: bool = False,
    managed_prefixes: Sequence[str] | None = None,
) -> TopicPlan:
    """``plan_topics`` against the broker at ``bootstrap`` (its topics and the configs of
    the declared ones, from Metadata and DescribeConfigs)."""
    async with TopicAdmin(bootstrap) as admin:
        live = await admin.live(with_configs=[s.name for s in wanted])
    return plan_topics(wanted, live, allow_delete=allow_delete, managed_prefixes=managed_prefixes)


async def _reconfigure(admin: TopicAdmin, plan: TopicPlan, done: list[str]) -> None:
    """AlterConfigs replaces all of a topic's overrides: send the overrides the topic has
    now (read again, not the plan's copy) with the planned values on top, so overrides
    nobody declared are kept. Refuses when a value changed since the plan."""
    by_topic: dict[str, list[ConfigChange]] = {}
    for change in plan.reconfigure:
        by_topic.setdefault(change.topic, []).append(change)
    if not by_topic:
        return
    current = await admin.configs(sorted(by_topic))
    for name, changes in by_topic.items():
        overrides, _ = current[name]
        hidden = sorted(key for key, value in overrides.items() if value is None)
        if hidden:
            raise InfraError(
                f"cannot alter the configs of {name}: the broker hides the value of "
                f"{', '.join(hidden)}, which a full AlterConfigs would drop",
                "change the topic with kafka-configs.sh --alter --add-config",
            )
        for change in changes:
            if overrides.get(change.key) != change.old:
                now = overrides.get(change.key) or "(default)"
                raise InfraError(
                    f"{name}: {change.key} changed since the plan (now {now}, planned "
                    f"from {change.old or '(default)'})",
                    "run the plan again",
                )
        desired = {k: v for k, v in overrides.items() if v is not None}
        desired.update({change.key: change.new for change in changes})
        await admin.replace_configs(name, desired)
        done.extend(f"~ {change.describe()}" for change in changes)


async def _settle(admin: TopicAdmin, plan: TopicPlan) -> list[str]:
    """Wait (bounded) until the broker shows every change, so that planning right after
    ``apply`` finds nothing to do. Returns a warning line if it does not in time."""
    names = [s.name for s in plan.create] + sorted({c.topic for c in plan.reconfigure})
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SETTLE_TIMEOUT_S
    waiting: list[str] = []
    while loop.time() < give_up:
        try:
            waiting = pending(plan, await admin.live(with_configs=names))
        except InfraError as exc:  # e.g. a new topic still electing its leaders
            waiting = [str(exc)]
            if not exc.retriable:
                break  # waiting will not fix it: say so now (the changes are made)
        if not waiting:
            return []
        await asyncio.sleep(SETTLE_POLL_S)
    return [
        f"! after {SETTLE_TIMEOUT_S:g}s the broker does not show yet: {'; '.join(waiting)} "
        "(run the plan again in a moment)"
    ]


async def apply_plan(bootstrap: str, plan: TopicPlan) -> list[str]:
    """Make the changes of ``plan`` (create, grow, reconfigure, delete, in that order) and
    return one line per change made. Impossible changes and unmanaged topics are left
    alone. On a failure, raises ``InfraError`` naming what was already done."""
    if plan.empty:
        return []
    done: list[str] = []
    async with TopicAdmin(bootstrap) as admin:
        try:
            await admin.create(plan.create)
            done.extend(f"+ created {_created(spec)}" for spec in plan.create)
            await admin.grow({name: want for name, _, want in plan.grow})
            done.extend(f"~ {n}: partitions {have} -> {want}" for n, have, want in plan.grow)
            await _reconfigure(admin, plan, done)
            await admin.delete(plan.delete)
            done.extend(f"- deleted {name}" for name in plan.delete)
        except InfraError as exc:
            if not done:
                raise
            raise type(exc)(f"{exc.what} (already done: {'; '.join(done)})", exc.fix,
                            retriable=exc.retriable) from exc
        done.extend(await _settle(admin, plan))
    return done


def plan(
    settings: Settings,
    wanted: Sequence[TopicSpec],
    *,
    allow_delete: bool = False,
    managed_prefixes: Sequence[str] | None = None,
) -> TopicPlan:
    """The plan against the broker of ``settings`` (``meshgate policy plan``)."""
    return asyncio.run(
        plan_live(
            settings.kafka_bootstrap,
            wanted,
            allow_delete=allow_delete,
            managed_prefixes=managed_prefixes,
        )
    )


def apply(settings: Settings, plan: TopicPlan) -> list[str]:
    """Apply ``plan`` to the broker of ``settings`` (``meshgate policy apply``); returns what
    changed, one line each (none for an empty plan)."""
    return asyncio.run(apply_plan(settings.kafka_bootstrap, plan))


async def apply_topics(bootstrap: str, wanted: list[TopicSpec]) -> TopicPlan:
    """What ``meshgate up`` / ``topics`` do: create missing topics and grow partitions only
    (no config change, no deletion). Returns the part of the plan it applied."""
    full = await plan_live(bootstrap, wanted)
    applied = TopicPlan(full.create, full.grow, full.cannot_shrink)
    await apply_plan(bootstrap, applied)
    return applied
