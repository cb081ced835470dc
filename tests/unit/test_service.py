"""bus.service: handlers by operation, and the reply (or error reply) each request gets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from bus.envelope import KIND_ERROR, KIND_REPLY, Envelope, ReplyTo, new_request, now_ms
from bus.errors import HandlerError
from bus.service import Payload, Service
from bus.topics import BadOperationName

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _request(
    operation: str = "calc.add", payload: bytes = b'{"a":2,"b":3}', timeout_ms: int = 5000,
) -> Envelope:
    return new_request(
        source="caller",
        operation=operation,
        value=payload,
        reply_to=ReplyTo("mesh.replies", 0),
        deadline_ms=now_ms() + timeout_ms,
        traceparent=TRACEPARENT,
    )


def _body(envelope: Envelope | None) -> dict[str, Any]:
    assert envelope is not None
    body: dict[str, Any] = json.loads(envelope.value)
    return body


class Sum(BaseModel):
    total: int


@pytest.fixture
def calc() -> Service:
    service = Service("calc")

    @service.operation("calc.add")
    async def add(payload: Payload, message: Envelope) -> Payload:
        return {"total": payload["a"] + payload["b"], "from": message.source}

    @service.operation("calc.add_model")
    async def add_model(payload: Payload, message: Envelope) -> Sum:
        return Sum(total=payload["a"] + payload["b"])

    @service.operation("calc.refuse")
    async def refuse(payload: Payload, message: Envelope) -> Payload:
        raise HandlerError("invalid_input", "b must be positive", retriable=False)

    @service.operation("calc.busy")
    async def busy(payload: Payload, message: Envelope) -> Payload:
        raise HandlerError("busy", "try again", retriable=True)

    @service.operation("calc.crash")
    async def crash(payload: Payload, message: Envelope) -> Payload:
        raise KeyError("secret-database-password")

    return service


def test_request_topic() -> None:
    assert Service("calc").request_topic == "calc.requests"


async def test_result_becomes_a_reply(calc: Service) -> None:
    request = _request()
    outcome = await calc.handle(request)
    assert outcome.error_code is None
    assert outcome.reply is not None
    assert outcome.reply.kind == KIND_REPLY
    assert outcome.reply.correlation_id == request.id
    assert outcome.reply.source == "calc"
    assert outcome.reply.traceparent == TRACEPARENT
    assert _body(outcome.reply) == {"total": 5, "from": "caller"}


async def test_model_result_is_encoded(calc: Service) -> None:
    outcome = await calc.handle(_request("calc.add_model"))
    assert _body(outcome.reply) == {"total": 5}


async def test_handler_error_becomes_error_reply(calc: Service) -> None:
    request = _request("calc.refuse")
    outcome = await calc.handle(request)
    assert outcome.error_code == "invalid_input"
    assert outcome.reply is not None
    assert outcome.reply.kind == KIND_ERROR
    assert outcome.reply.correlation_id == request.id
    assert _body(outcome.reply) == {
        "code": "invalid_input", "message": "b must be positive", "retriable": False,
    }


async def test_retriable_handler_error_says_so(calc: Service) -> None:
    outcome = await calc.handle(_request("calc.busy"))
    assert _body(outcome.reply) == {"code": "busy", "message": "try again", "retriable": True}


async def test_unexpected_exception_becomes_internal_without_leaking(calc: Service) -> None:
    outcome = await calc.handle(_request("calc.crash"))
    assert outcome.error_code == "internal"
    assert outcome.reply is not None
    assert outcome.reply.kind == KIND_ERROR
    body = _body(outcome.reply)
    assert body["code"] == "internal"
    assert body["retriable"] is True
    assert "secret-database-password" not in outcome.reply.value.decode()
    assert "KeyError" in body["message"]


async def test_unknown_operation(calc: Service) -> None:
    outcome = await calc.handle(_request("calc.divide"))
    assert outcome.error_code == "unknown_operation"
    body = _body(outcome.reply)
    assert body["code"] == "unknown_operation"
    assert body["retriable"] is False
    assert "calc.divide" in body["message"]


async def test_value_that_is_not_json_is_a_bad_envelope(calc: Service) -> None:
    outcome = await calc.handle(_request(payload=b"not json"))
    assert outcome.error_code == "bad_envelope"
    assert _body(outcome.reply)["retriable"] is False


async def test_expired_deadline_is_not_handled() -> None:
    service = Service("calc")
    calls = 0

    @service.operation("calc.count")
    async def count(payload: Payload, message: Envelope) -> Payload:
        nonlocal calls
        calls += 1
        return {}

    outcome = await service.handle(_request("calc.count", timeout_ms=-1))
    assert calls == 0
    assert outcome.error_code == "deadline_exceeded"
    body = _body(outcome.reply)
    assert body["code"] == "deadline_exceeded"
    assert body["retriable"] is True

    outcome = await service.handle(_request("calc.count"))
    assert calls == 1
    assert outcome.error_code is None


async def test_request_without_deadline_is_handled() -> None:
    service = Service("calc")

    @service.operation("calc.echo")
    async def echo(payload: Payload, message: Envelope) -> Payload:
        return payload

    request = Envelope(
        id="r1", source="caller", type="calc.echo", kind="request", value=b'{"x":1}',
        time_ms=now_ms(), reply_to=ReplyTo("mesh.replies", 0),
    )
    outcome = await service.handle(request)
    assert _body(outcome.reply) == {"x": 1}
    assert outcome.reply is not None
    assert outcome.reply.correlation_id == "r1"


async def test_handler_hanging_past_deadline_gets_deadline_exceeded() -> None:
    service = Service("calc")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @service.operation("calc.hang")
    async def hang(payload: Payload, message: Envelope) -> Payload:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    outcome = await asyncio.wait_for(service.handle(_request("calc.hang", timeout_ms=50)), 5)
    assert started.is_set()
    assert cancelled.is_set(), "the hanging handler should have been cancelled"
    assert outcome.error_code == "deadline_exceeded"
    assert _body(outcome.reply)["code"] == "deadline_exceeded"


def test_operation_of_another_service_is_refused() -> None:
    service = Service("calc")
    with pytest.raises(ValueError, match="does not belong"):
        service.operation("orders.create")
    assert service.handlers == {}


def test_operation_registered_twice_is_refused() -> None:
    service = Service("calc")

    async def first(payload: Payload, message: Envelope) -> Payload:
        return {"n": 1}

    async def second(payload: Payload, message: Envelope) -> Payload:
        return {"n": 2}

    assert service.operation("calc.op")(first) is first
    with pytest.raises(ValueError, match="already"):
        service.operation("calc.op")(second)
    assert service.handlers["calc.op"] is first


def test_malformed_operation_name_is_refused() -> None:
    with pytest.raises(BadOperationName):
        Service("calc").operation("calc")
