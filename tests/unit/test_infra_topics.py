"""infra.topics: the topic plan (create missing, grow, never shrink or delete) and its file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.settings import ROOT
from infra.topics import TopicSpec, load_topics, plan_topics


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


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    return path


def test_load_topics(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
services: ignored
topics:
  - name: orders.requests
    partitions: 6
    config:
      retention.ms: "86400000"
  - name: mesh_replies-2
    partitions: 16
    replication: 3
""",
    )
    specs = load_topics(path)
    assert [(s.name, s.partitions, s.replication) for s in specs] == [
        ("orders.requests", 6, 1), ("mesh_replies-2", 16, 3),
    ]
    assert specs[0].config == {"retention.ms": "86400000"}
    assert specs[1].config == {}


def test_project_policies_declare_the_topics_the_mesh_uses() -> None:
    names = {s.name for s in load_topics(ROOT / "policies" / "mesh.yaml")}
    assert {"orders.requests", "mesh.replies"} <= names


@pytest.mark.parametrize(
    "name",
    ["", "has space", "slash/name", "colon:name", "uml\u00e4ut", "x" * 250, "tab\tname", "a\n"],
)
def test_load_topics_rejects_bad_names(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, "topics:\n  - name: " + repr(name).replace("'", '"') + "\n"
                  "    partitions: 1\n")
    with pytest.raises(ValidationError):
        load_topics(path)


def test_longest_valid_name_is_accepted() -> None:
    assert TopicSpec(name="x" * 249, partitions=1).name == "x" * 249


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        TopicSpec(name=name, partitions=1)


@pytest.mark.parametrize(
    "entry",
    [
        "  - name: a\n    partitions: 0\n",
        "  - name: a\n    partitions: 1001\n",
        "  - name: a\n    partitions: 1\n    replication: 0\n",
        "  - name: a\n",
        "  - name: a\n    partitions: 1\n    colour: red\n",
    ],
)
def test_load_topics_rejects_bad_specs(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ValidationError):
        load_topics(_write(tmp_path, "topics:\n" + entry))


def test_load_topics_rejects_a_file_without_topics(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_topics(_write(tmp_path, "services: []\n"))


def test_duplicate_topic_names_are_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "topics:\n  - name: orders.requests\n    partitions: 1\n"
        "  - name: orders.requests\n    partitions: 3\n",
    )
    with pytest.raises(ValueError, match=r"orders\.requests"):
        load_topics(path)
