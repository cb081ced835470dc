"""bus.telemetry.tracing: W3C traceparent helpers."""

from __future__ import annotations

import re

import pytest

from bus.telemetry.tracing import child_of, new_traceparent, trace_id

PATTERN = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_new_traceparent_is_w3c_and_unique() -> None:
    first, second = new_traceparent(), new_traceparent()
    assert PATTERN.fullmatch(first)
    assert first != second


def test_a_new_span_id_is_not_drawn_from_its_trace_id() -> None:
    for _ in range(50):
        _, trace, span, _ = new_traceparent().split("-")
        assert span not in trace


def test_trace_id() -> None:
    assert trace_id(PARENT) == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("value", [None, "", "garbage", PARENT.upper(), PARENT + "-extra"])
def test_trace_id_of_invalid_is_none(value: str | None) -> None:
    assert trace_id(value) is None


def test_child_keeps_the_trace_with_a_new_span() -> None:
    child = child_of(PARENT)
    assert PATTERN.fullmatch(child)
    assert trace_id(child) == trace_id(PARENT)
    assert child.split("-")[2] != PARENT.split("-")[2]


@pytest.mark.parametrize("value", [None, "garbage"])
def test_child_of_invalid_starts_a_new_trace(value: str | None) -> None:
    assert PATTERN.fullmatch(child_of(value))
