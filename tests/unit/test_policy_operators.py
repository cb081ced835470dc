"""The policy's ``operators`` section: who may replay dead letters onto which topics."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bus.policy import Policy, check_policy

TOPICS = {"orders.events": {"partitions": 3}, "payments.events": {"partitions": 1},
          "orders.requests": {"partitions": 1}}


def policy(operators: dict[str, object], services: dict[str, object] | None = None) -> Policy:
    return Policy.from_json(json.dumps({"services": services or {}, "topics": TOPICS,
                                        "operators": operators}))


def test_replay_patterns_expand_to_declared_topics_only() -> None:
    found = policy({"ops": {"replay": ["*.events", "orders.events", "nowhere.events"]}})
    assert found.replay_map() == {"ops": ["orders.events", "payments.events"]}
    assert [f.render() for f in check_policy(found)] == [
        "operators.ops.replay: topic nowhere.events is not declared; declare it under topics "
        "or fix the name (did you mean orders.events?)"]


def test_an_operator_cannot_also_be_a_service() -> None:
    found = policy({"orders": {"replay": ["orders.events"]}}, {"orders": {}})
    assert [f.path for f in check_policy(found)] == [("operators", "orders")]


def test_operators_are_closed_and_named_like_services() -> None:
    with pytest.raises(ValidationError):
        policy({"ops": {"replay": ["orders.events"], "sign_as": ["orders"]}})
    with pytest.raises(ValidationError):
        policy({"Ops!": {}})
    assert policy({}).replay_map() == {}
