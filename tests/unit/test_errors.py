"""bus.errors: one hierarchy, each error saying whether a retry may help."""

from __future__ import annotations

import pytest

from bus.errors import (
    BrokerRefused,
    DeadlineExceeded,
    EnvelopeError,
    HandlerError,
    MeshError,
    RemoteError,
    TransportError,
    UnknownOperation,
    is_retriable,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("down"), True),
        (BrokerRefused("no such topic"), False),
        (DeadlineExceeded("late"), True),
        (EnvelopeError("bad"), False),
        (UnknownOperation("what"), False),
        (HandlerError("invalid", "no", retriable=True), True),  # the handler decides
        (MeshError("generic"), False),
        (RemoteError("busy", "try later", True), True),
        (RemoteError("invalid_order", "no", False), False),
        (ValueError("not a mesh error"), False),
        (TimeoutError(), False),
    ],
)
def test_is_retriable(error: BaseException, expected: bool) -> None:
    assert is_retriable(error) is expected


def test_broker_refused_is_a_transport_error() -> None:
    assert isinstance(BrokerRefused("x"), TransportError)


def test_codes() -> None:
    assert TransportError("x").code == "transport"
    assert BrokerRefused("x").code == "broker_refused"
    assert DeadlineExceeded("x").code == "deadline_exceeded"
    assert EnvelopeError("x").code == "bad_envelope"
    assert UnknownOperation("x").code == "unknown_operation"


def test_remote_error_keeps_code_message_and_retriable() -> None:
    error = RemoteError("out_of_stock", "sku-1 is gone", True)
    assert error.remote_code == "out_of_stock"
    assert error.message == "sku-1 is gone"
    assert error.remote_retriable is True
    assert error.retriable is True
    assert str(error) == "out_of_stock: sku-1 is gone"
    assert isinstance(error, MeshError)
    assert RemoteError("c", "m", False).retriable is False


def test_handler_error_keeps_code_and_retriable() -> None:
    error = HandlerError("invalid_order", "no lines")
    assert (error.error_code, error.message, error.retriable) == (
        "invalid_order", "no lines", False,
    )
    assert HandlerError("busy", "later", retriable=True).retriable is True


def test_message_is_the_exception_text() -> None:
    assert str(TransportError("broker down")) == "broker down"
    assert TransportError("broker down").message == "broker down"


def test_remote_error_retriable_attribute_follows_remote_flag() -> None:
    assert RemoteError("busy", "try later", True).retriable is True
