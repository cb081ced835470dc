"""bus.topics: operation names to services and request topics."""

from __future__ import annotations

import pytest

from bus.config import BusSettings
from bus.errors import MeshError
from bus.topics import (
    REPLY_TOPIC,
    BadOperationName,
    request_topic,
    service_of,
    topic_for_operation,
)


def test_service_of() -> None:
    assert service_of("orders.create") == "orders"
    assert service_of("orders.v2.create") == "orders"


def test_request_topic() -> None:
    assert request_topic("orders") == "orders.requests"


def test_topic_for_operation() -> None:
    assert topic_for_operation("orders.create") == "orders.requests"
    assert topic_for_operation("billing.charge") == "billing.requests"


def test_reply_topic_matches_default_settings() -> None:
    assert BusSettings().reply_topic == REPLY_TOPIC


@pytest.mark.parametrize("name", ["", "orders", ".create", "orders.", "."])
def test_bad_operation_names(name: str) -> None:
    with pytest.raises(BadOperationName) as info:
        service_of(name)
    assert isinstance(info.value, MeshError)
    assert info.value.code == "bad_operation"
    with pytest.raises(BadOperationName):
        topic_for_operation(name)
