"""functions.shared.json_logs: one JSON object per line, with trace and handler context."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from bus.context import current_message
from bus.envelope import ReplyTo, new_request, now_ms
from functions.shared.json_logs import JsonFormatter, formatter_for, setup_logging


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(JsonFormatter("orders"))
        self.logger = logging.getLogger(f"test.json_logs.{id(self)}")
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def lines(self) -> list[dict[str, Any]]:
        text = self.stream.getvalue()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def logs() -> Captured:
    return Captured()


def test_a_record_is_one_json_line_with_the_base_fields(logs: Captured) -> None:
    logs.logger.warning("stock low for %s\nsecond line", "a-1", extra={"sku": "a-1", "n": 3})
    [entry] = logs.lines()
    assert entry["level"] == "WARNING"
    assert entry["logger"] == logs.logger.name
    assert entry["message"] == "stock low for a-1\nsecond line"
    assert entry["service"] == "orders"
    assert entry["timestamp"].endswith("Z")
    assert "T" in entry["timestamp"]
    assert (entry["sku"], entry["n"]) == ("a-1", 3)
    assert "trace_id" not in entry
    assert "operation" not in entry


def test_trace_and_span_ids_inside_a_span(logs: Captured) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logs.logger.info("inside")
    logs.logger.info("outside")
    inside, outside = logs.lines()
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside


def test_operation_and_ids_inside_a_handler(logs: Captured) -> None:
    message = new_request(source="gateway", operation="orders.create", value=b"{}",
                          reply_to=ReplyTo("mesh.replies", 0), deadline_ms=now_ms() + 5000)
    token = current_message.set(message)
    try:
        logs.logger.info("handling")
    finally:
        current_message.reset(token)
    [entry] = logs.lines()
    assert entry["operation"] == "orders.create"
    assert entry["message_id"] == message.id
    assert entry["correlation_id"] == message.correlation_id


def test_an_exception_is_one_field_on_one_line(logs: Captured) -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logs.logger.exception("failed")
    logs.logger.info("stack", stack_info=True)
    assert len(logs.stream.getvalue().splitlines()) == 2
    failed, stack = logs.lines()
    assert failed["exception"].startswith("Traceback")
    assert "ValueError: bad\nvalue" in failed["exception"]
    assert "Stack (most recent call last)" in stack["stack"]


def test_values_json_cannot_carry_are_their_repr(logs: Captured) -> None:
    logs.logger.info("x", extra={"where": object(), "tags": ("a", "b")})
    [entry] = logs.lines()
    assert entry["where"].startswith("<object object")
    assert entry["tags"] == ["a", "b"]


def test_text_escape_hatch_and_setup() -> None:
    assert isinstance(formatter_for("orders", {}), JsonFormatter)
    text = formatter_for("orders", {"MESH_LOG_FORMAT": "text"})
    assert not isinstance(text, JsonFormatter)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        setup_logging("orders", stream=stream, env={})
        handler = setup_logging("orders", stream=stream, env={})
        assert root.handlers == [handler]
        logging.getLogger("some.module").info("hello")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert json.loads(stream.getvalue())["message"] == "hello"
