"""infra.kafka.topics plan/apply: the pure plan, its text, and apply over an in-memory broker that
answers like aiokafka's admin client (AlterConfigs replaces every override of a topic)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.errors import InvalidPartitionsError

from infra.errors import InfraError, NotReachable
from infra.kafka import admin_connection, topic_admin
from infra.kafka.topics import (
    ConfigChange,
    LiveTopic,
    TopicPlan,
    TopicSpec,
    apply_plan,
    default_prefixes,
    pending,
    plan_live,
    plan_topics,
)


def _spec(name: str, partitions: int, replication: int = 1, **config: str) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=partitions,
        replication=replication,
        config={k.replace("_", "."): v for k, v in config.items()},
    )


def _live(name: str, partitions: int, replication: int = 1, **config: str) -> LiveTopic:
    return LiveTopic(
        name=name,
        partitions=partitions,
        replication=replication,
        configs={k.replace("_", "."): v for k, v in config.items()},
        defaults={"retention.ms": "604800000", "cleanup.policy": "delete"},
    )


# -- the plan --------------------------------------------------------------------------------


def test_up_to_date_topics_make_an_empty_plan() -> None:
    wanted = [_spec("orders.requests", 6, retention_ms="86400000")]
    plan = plan_topics(wanted, {"orders.requests": _live("orders.requests", 6,
                                                         retention_ms="86400000")})
    assert plan.empty
    assert plan.changes() == []
    assert plan.render() == "empty"


def test_the_terraform_like_text() -> None:
    wanted = [
        _spec("orders.requests", 8, retention_ms="86400000"),
        _spec("mesh.replies", 16, retention_ms="7200000"),
        _spec("mesh.quarantine", 3, retention_ms="604800000", cleanup_policy="compact"),
        _spec("x.big", 3),
        _spec("orders.new", 6, replication=1, retention_ms="86400000"),
    ]
    existing = {
        "orders.requests": _live("orders.requests", 6, retention_ms="86400000"),
        "mesh.replies": _live("mesh.replies", 16, retention_ms="3600000"),
        "mesh.quarantine": _live("mesh.quarantine", 3, retention_ms="604800000"),
        "x.big": _live("x.big", 6),
        "old.topic": _live("old.topic", 1),
        "mesh.legacy": _live("mesh.legacy", 1),
    }
    plan = plan_topics(wanted, existing, allow_delete=True,
                       managed_prefixes=["old.", "mesh.", "orders."])
    assert plan.render() == "\n".join([
        "+ create orders.new (6 partitions, retention.ms=86400000)",
        "~ orders.requests: partitions 6 -> 8",
        "~ mesh.replies: retention.ms 3600000 -> 7200000",
        "~ mesh.quarantine: cleanup.policy delete (default) -> compact",
        "- delete mesh.legacy",
        "- delete old.topic",
        "! cannot shrink x.big from 6 to 3 partitions (Kafka never removes partitions; "
        "recreate the topic to shrink it)",
    ])
    assert not plan.empty


def test_create_line_shows_replication_and_sorted_configs() -> None:
    plan = plan_topics([_spec("a.b", 1, 3, retention_ms="1", compression_type="zstd")], {})
    assert plan.changes() == [
        "+ create a.b (1 partition, replication 3, compression.type=zstd, retention.ms=1)"
    ]


def test_grows_but_never_shrinks() -> None:
    plan = plan_topics([_spec("a", 8), _spec("b", 3)], {"a": 6, "b": 6})
    assert plan.grow == (("a", 6, 8),)
    assert plan.cannot_shrink == (("b", 6, 3),)
    assert plan.changes() == ["~ a: partitions 6 -> 8"]
    assert plan.impossible[0].startswith("cannot shrink b from 6 to 3 partitions")


def test_a_shrink_alone_leaves_nothing_to_do_but_is_reported() -> None:
    plan = plan_topics([_spec("b", 3)], {"b": 6})
    assert plan.empty
    assert plan.render().splitlines() == [
        "empty",
        "! cannot shrink b from 6 to 3 partitions (Kafka never removes partitions; "
        "recreate the topic to shrink it)",
    ]


def test_config_drift_is_reported_old_to_new() -> None:
    wanted = [_spec("t", 1, retention_ms="7200000", min_insync_replicas="1",
                    compression_type="lz4", cleanup_policy="compact")]
    live = _live("t", 1, retention_ms="3600000", compression_type="lz4")
    plan = plan_topics(wanted, {"t": live})
    assert plan.reconfigure == (
        ConfigChange("t", "cleanup.policy", None, "compact", "delete"),
        ConfigChange("t", "min.insync.replicas", None, "1", None),
        ConfigChange("t", "retention.ms", "3600000", "7200000"),
    )
    assert plan.changes() == [
        "~ t: cleanup.policy delete (default) -> compact",
        "~ t: min.insync.replicas (default) -> 1",
        "~ t: retention.ms 3600000 -> 7200000",
    ]


def test_undeclared_overrides_are_not_drift() -> None:
    live = _live("t", 1, retention_ms="1000", segment_bytes="1048576")
    assert plan_topics([_spec("t", 1, retention_ms="1000")], {"t": live}).empty


def test_configs_are_not_compared_when_unknown() -> None:
    assert plan_topics([_spec("t", 1, retention_ms="1000")], {"t": 1}).empty


def test_replication_changes_are_not_supported() -> None:
    plan = plan_topics([_spec("t", 1, replication=3)], {"t": _live("t", 1, replication=1)})
    assert plan.empty
    assert plan.replication == (("t", 1, 3),)
    assert plan.notes() == [
        "! t: replication factor 1 -> 3 is not supported "
        "(reassign the partitions with kafka-reassign-partitions.sh)"
    ]


def test_unmanaged_topics_are_listed_and_kept_without_allow_delete() -> None:
    existing: dict[str, int | LiveTopic] = {"m.a": 1, "m.old": 1, "other": 1}
    plan = plan_topics([_spec("m.a", 1)], existing)
    assert plan.empty
    assert plan.delete == ()
    assert plan.unmanaged == ("m.old", "other")
    assert plan.notes() == [
        "? unmanaged m.old (not declared; kept; allow_delete would delete it)",
        "? unmanaged other (not declared; kept: outside the managed prefixes)",
    ]
    assert plan.notes(unmanaged=False) == []
    assert plan.render(unmanaged=False) == "empty"


def test_allow_delete_deletes_only_under_the_managed_prefixes() -> None:
    existing: dict[str, int | LiveTopic] = {"m.a": 1, "m.old": 1, "other": 1, "n.x": 1}
    plan = plan_topics([_spec("m.a", 1)], existing, allow_delete=True)
    assert plan.delete == ("m.old",)
    assert plan.unmanaged == ("n.x", "other")
    assert plan.changes() == ["- delete m.old"]
    explicit = plan_topics([_spec("m.a", 1)], existing, allow_delete=True,
                           managed_prefixes=["n."])
    assert explicit.delete == ("n.x",)
    nothing = plan_topics([_spec("m.a", 1)], existing, allow_delete=True, managed_prefixes=[])
    assert nothing.delete == ()
    assert nothing.empty


def test_internal_topics_are_never_listed_nor_deleted() -> None:
    existing: dict[str, int | LiveTopic] = {
        "__consumer_offsets": 50,
        "__m.x": 1,
        "m.internal": LiveTopic(name="m.internal", partitions=1, internal=True),
    }
    for allow in (False, True):
        plan = plan_topics([_spec("m.a", 1)], existing, allow_delete=allow,
                           managed_prefixes=["m.", "_"])
        assert plan.delete == ()
        assert plan.unmanaged == ()


def test_retry_and_dead_letter_topics_of_declared_topics_are_never_deleted() -> None:
    existing: dict[str, int | LiveTopic] = {
        "orders.requests": 6, "orders.requests.retry.1": 6, "orders.requests.dlt": 6,
        "orders.legacy": 1,
    }
    plan = plan_topics([_spec("orders.requests", 6)], existing, allow_delete=True)
    assert plan.delete == ("orders.legacy",)
    assert plan.unmanaged == ("orders.requests.dlt", "orders.requests.retry.1")
    assert plan.protected["orders.requests.dlt"].startswith("derived from the declared")


def test_default_prefixes_come_from_the_declared_names() -> None:
    wanted = [_spec("orders.requests", 1), _spec("mesh.replies", 1), _spec("plain", 1)]
    assert default_prefixes(wanted) == ("mesh.", "orders.")


@pytest.mark.parametrize("prefix", ["", "__", "__x"])
def test_prefixes_that_cover_too_much_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="managed prefix"):
        plan_topics([_spec("a", 1)], {}, allow_delete=True, managed_prefixes=[prefix])


def test_duplicate_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="more than once: a"):
        plan_topics([_spec("a", 1), _spec("a", 2)], {})


def test_old_callers_keep_their_plan() -> None:
    plan = plan_topics([_spec("a", 3), _spec("b", 1)], {"a": 2, "legacy": 1})
    assert plan == TopicPlan(
        create=(_spec("b", 1),), grow=(("a", 2, 3),), cannot_shrink=(),
        unmanaged=("legacy",), protected={"legacy": "outside the managed prefixes"},
    )


def test_pending_lists_what_the_broker_does_not_show_yet() -> None:
    plan = TopicPlan(
        create=(_spec("new", 2, retention_ms="5"),),
        grow=(("g", 1, 4),),
        cannot_shrink=(),
        reconfigure=(ConfigChange("c", "retention.ms", "1", "2"),),
        delete=("d",),
    )
    before = {"g": _live("g", 1), "c": _live("c", 1, retention_ms="1"), "d": _live("d", 1)}
    assert pending(plan, before) == [
        "create new", "g: partitions -> 4", "c: retention.ms -> 2", "delete d",
    ]
    after = {"new": _live("new", 2, retention_ms="5"), "g": _live("g", 4),
             "c": _live("c", 1, retention_ms="2")}
    assert pending(plan, after) == []


# -- apply, over an in-memory broker ---------------------------------------------------------


class Response:
    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = obj

    def to_object(self) -> dict[str, Any]:
        return self._obj


@dataclass
class Topic:
    partitions: int
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class Broker:
    topics: dict[str, Topic] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    reachable: bool = True
    hang: str | None = None
    defaults: dict[str, str] = field(
        default_factory=lambda: {"retention.ms": "604800000", "cleanup.policy": "delete"}
    )


class FakeAdminClient:
    """The subset of AIOKafkaAdminClient that infra.kafka.topic_admin uses, answering like a
    KRaft broker (per-topic error codes in the responses, DescribeConfigs v2)."""

    broker = Broker()

    def __init__(self, **_: Any) -> None:
        pass

    async def _maybe_hang(self, what: str) -> None:
        if self.broker.hang == what:
            await asyncio.sleep(3600)

    async def start(self) -> None:
        if not self.broker.reachable:
            raise OSError("connection refused")

    async def close(self) -> None:
        pass

    async def describe_topics(self) -> list[dict[str, Any]]:
        await self._maybe_hang("describe_topics")
        return [
            {"error_code": 0, "topic": name, "is_internal": name.startswith("__"),
             "partitions": [{"partition": i, "replicas": [1]} for i in range(t.partitions)]}
            for name, t in self.broker.topics.items()
        ]

    async def describe_configs(self, resources: list[ConfigResource]) -> list[Response]:
        entries = []
        for r in resources:
            topic = self.broker.topics.get(r.name)
            if topic is None:
                entries.append({"error_code": 3, "error_message": "", "resource_type": 2,
                                "resource_name": r.name, "config_entries": []})
                continue
            configs = [
                {"config_names": k, "config_value": v, "read_only": False,
                 "config_source": 1, "is_sensitive": False, "config_synonyms": []}
                for k, v in topic.overrides.items()
            ] + [
                {"config_names": k, "config_value": v, "read_only": False,
                 "config_source": 5, "is_sensitive": False, "config_synonyms": []}
                for k, v in self.broker.defaults.items() if k not in topic.overrides
            ]
            entries.append({"error_code": 0, "error_message": None, "resource_type": 2,
                            "resource_name": r.name, "config_entries": configs})
        return [Response({"throttle_time_ms": 0, "resources": entries})]

    async def create_topics(self, new: list[NewTopic], timeout_ms: int = 0) -> Response:
        self.broker.calls.append(("create", [t.name for t in new]))
        errors = []
        for t in new:
            if t.name in self.broker.topics:
                errors.append({"topic": t.name, "error_code": 36,
                               "error_message": f"Topic '{t.name}' already exists."})
                continue
            self.broker.topics[t.name] = Topic(t.num_partitions, dict(t.topic_configs))
            errors.append({"topic": t.name, "error_code": 0, "error_message": None})
        return Response({"throttle_time_ms": 0, "topic_errors": errors})

    async def create_partitions(self, counts: dict[str, NewPartitions],
                                timeout_ms: int = 0) -> Response:
        self.broker.calls.append(("grow", {k: v.total_count for k, v in counts.items()}))
        for name, new in counts.items():
            if new.total_count <= self.broker.topics[name].partitions:
                raise InvalidPartitionsError(f"Could not create partitions for {name}")
            self.broker.topics[name].partitions = new.total_count
        return Response({})

    async def alter_configs(self, resources: list[ConfigResource]) -> list[Response]:
        out = []
        for r in resources:
            self.broker.calls.append(("alter", (r.name, dict(r.configs))))
            if any(not v.isdigit() for k, v in r.configs.items() if k.endswith(".ms")):
                out.append({"error_code": 40, "resource_type": 2, "resource_name": r.name,
                            "error_message": "Invalid value for configuration retention.ms"})
                continue
            self.broker.topics[r.name].overrides = dict(r.configs)  # replaces all of them
            out.append({"error_code": 0, "error_message": None, "resource_type": 2,
                        "resource_name": r.name})
        return [Response({"throttle_time_ms": 0, "resources": out})]

    async def delete_topics(self, names: list[str], timeout_ms: int = 0) -> Response:
        self.broker.calls.append(("delete", names))
        codes = []
        for name in names:
            codes.append({"topic": name, "error_code": 0 if name in self.broker.topics else 3})
            self.broker.topics.pop(name, None)
        return Response({"throttle_time_ms": 0, "topic_error_codes": codes})


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    fresh = Broker()
    monkeypatch.setattr(FakeAdminClient, "broker", fresh)
    monkeypatch.setattr(admin_connection, "AIOKafkaAdminClient", FakeAdminClient)
    return fresh


async def test_apply_then_plan_again_is_empty(broker: Broker) -> None:
    broker.topics = {
        "m.grow": Topic(2, {"retention.ms": "1000"}),
        "m.conf": Topic(1, {"retention.ms": "1000", "segment.bytes": "1048576"}),
        "m.old": Topic(1),
        "__consumer_offsets": Topic(50),
    }
    wanted = [
        _spec("m.new", 3, retention_ms="86400000"),
        _spec("m.grow", 4, retention_ms="1000"),
        _spec("m.conf", 1, retention_ms="2000", cleanup_policy="compact"),
    ]
    plan = await plan_live("fake:9092", wanted, allow_delete=True)
    assert plan.changes() == [
        "+ create m.new (3 partitions, retention.ms=86400000)",
        "~ m.grow: partitions 2 -> 4",
        "~ m.conf: cleanup.policy delete (default) -> compact",
        "~ m.conf: retention.ms 1000 -> 2000",
        "- delete m.old",
    ]
    assert await apply_plan("fake:9092", plan) == [
        "+ created m.new (3 partitions, retention.ms=86400000)",
        "~ m.grow: partitions 2 -> 4",
        "~ m.conf: cleanup.policy delete (default) -> compact",
        "~ m.conf: retention.ms 1000 -> 2000",
        "- deleted m.old",
    ]
    # AlterConfigs got the whole set: the undeclared override is kept.
    assert ("alter", ("m.conf", {"retention.ms": "2000", "segment.bytes": "1048576",
                                 "cleanup.policy": "compact"})) in broker.calls
    assert broker.topics["m.conf"].overrides["segment.bytes"] == "1048576"
    again = await plan_live("fake:9092", wanted, allow_delete=True)
    assert again.empty
    assert again.render() == "empty"
    assert "__consumer_offsets" in broker.topics


async def test_an_empty_plan_applies_without_connecting(broker: Broker) -> None:
    broker.reachable = False
    assert await apply_plan("fake:9092", TopicPlan((), (), (("a", 3, 1),))) == []


async def test_an_unreachable_broker_is_one_clear_error(broker: Broker) -> None:
    broker.reachable = False
    with pytest.raises(NotReachable, match=r"Kafka at fake:9092 does not answer \(OSError"):
        await plan_live("fake:9092", [_spec("a", 1)])


async def test_a_refused_config_is_one_line_with_what_was_done(broker: Broker) -> None:
    broker.topics = {"m.conf": Topic(1, {"retention.ms": "1"})}
    plan = await plan_live("fake:9092", [_spec("m.new", 1), _spec("m.conf", 1,
                                                                   retention_ms="bogus")])
    with pytest.raises(InfraError) as caught:
        await apply_plan("fake:9092", plan)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "Kafka refused to alter the configs of m.conf: InvalidConfigurationError: "
        "Invalid value for configuration retention.ms"
    )
    assert "(already done: + created m.new (1 partition))" in message
    assert message.endswith("; fix the value in the policies")


async def test_a_topic_created_since_the_plan_is_refused_clearly(broker: Broker) -> None:
    plan = await plan_live("fake:9092", [_spec("m.a", 1)])
    broker.topics["m.a"] = Topic(1)
    with pytest.raises(InfraError, match=r"refused to create m\.a: TopicAlreadyExistsError"):
        await apply_plan("fake:9092", plan)


async def test_a_config_changed_since_the_plan_is_not_overwritten(broker: Broker) -> None:
    broker.topics = {"m.c": Topic(1, {"retention.ms": "1"})}
    plan = await plan_live("fake:9092", [_spec("m.c", 1, retention_ms="2")])
    broker.topics["m.c"].overrides["retention.ms"] = "3"
    with pytest.raises(InfraError, match=r"changed since the plan \(now 3, planned from 1\)"):
        await apply_plan("fake:9092", plan)
    assert broker.topics["m.c"].overrides == {"retention.ms": "3"}


async def test_grow_errors_are_translated(broker: Broker) -> None:
    broker.topics = {"m.g": Topic(4)}
    plan = TopicPlan((), (("m.g", 2, 3),), ())
    with pytest.raises(InfraError, match=r"add partitions to m\.g failed: InvalidPartitionsError"):
        await apply_plan("fake:9092", plan)


async def test_admin_calls_are_bounded(broker: Broker) -> None:
    broker.hang = "describe_topics"
    admin = topic_admin.TopicAdmin("fake:9092", timeout_s=0.05)
    async with admin:
        with pytest.raises(InfraError, match=r"did not answer 'describe topics' within 0\.05s"):
            await admin.topics()


async def test_describe_configs_reads_only_the_topics_own_overrides(broker: Broker) -> None:
    broker.topics = {"t": Topic(3, {"retention.ms": "5"})}
    async with topic_admin.TopicAdmin("fake:9092") as admin:
        live = await admin.live(with_configs=["t", "absent"])
    assert live["t"] == LiveTopic(
        name="t", partitions=3, replication=1, configs={"retention.ms": "5"},
        defaults={"cleanup.policy": "delete"},
    )
