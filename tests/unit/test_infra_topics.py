"""infra.kafka.topics: the topic plan (create missing, grow, never shrink or delete) and its
file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.kafka.topics import TopicSpec, plan_topics
from infra.policy import topic_specs
from infra.settings import ROOT


def _spec(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name=name, partitions=partitions)


def test_creates_missing_topics() -> None:
    wanted = [_spec("a", 3), _spec("b", 1)]
    plan = plan_topics(wanted, {})
    assert plan.create == (wanted[0], wanted[1])
    assert plan.grow == ()
    assert plan.cannot_shrink == ()
    assert not plan.empty


def test_grows_topics_with_too_few_partitions() -> None:
    plan = plan_topics([_spec("a", 6)], {"a": 2})
    assert plan.create == ()
    assert plan.grow == (("a", 2, 6),)
    assert not plan.empty


def test_never_shrinks() -> None:
    plan = plan_topics([_spec("a", 2)], {"a": 6})
    assert plan.create == ()
    assert plan.grow == ()
    assert plan.cannot_shrink == (("a", 6, 2),)
    assert plan.empty


def test_never_deletes_unlisted_topics() -> None:
    plan = plan_topics([_spec("a", 1)], {"a": 1, "legacy": 12})
    assert plan.empty
    assert plan.create == ()
    assert plan.grow == ()
    assert plan.cannot_shrink == ()


def test_up_to_date_is_empty() -> None:
    assert plan_topics([_spec("a", 3), _spec("b", 1)], {"a": 3, "b": 1}).empty


def test_mixed_plan() -> None:
    wanted = [_spec("new", 2), _spec("small", 8), _spec("big", 1), _spec("same", 4)]
    plan = plan_topics(wanted, {"small": 4, "big": 3, "same": 4, "other": 1})
    assert [s.name for s in plan.create] == ["new"]
    assert plan.grow == (("small", 4, 8),)
    assert plan.cannot_shrink == (("big", 3, 1),)


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/name", "colon:name", "uml\u00e4ut", "x" * 250, "tab\tname", "a\n"],
)
def test_bad_topic_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        TopicSpec(name=name, partitions=1)


def test_longest_valid_name_is_accepted() -> None:
    assert TopicSpec(name="x" * 249, partitions=1).name == "x" * 249


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        TopicSpec(name=name, partitions=1)


@pytest.mark.parametrize(
    "fields",
    [{"partitions": 0}, {"partitions": 1001}, {"partitions": 1, "replication": 0}, {},
     {"partitions": 1, "colour": "red"}],
)
def test_bad_specs_are_rejected(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TopicSpec.model_validate({"name": "a", **fields})


def test_project_policies_declare_the_topics_the_mesh_uses() -> None:
    names = {s.name for s in topic_specs(ROOT / "policies")}
    assert {"orders.requests", "mesh.replies", "mesh.quarantine"} <= names


