"""The one rule for which reply answers a call (``bus.security.reply_match``), and ``MeshClient``
applying it over the memory transport with real signatures: a validly signed reply from a
service that does not own the operation (or from the owner as another operation) is
quarantined with its reason and the call still gets the owner's genuine answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bus.config import BusSettings
from bus.envelope import (
    KIND_EVENT,
    KIND_REQUEST,
    Envelope,
    ReplyTo,
    from_record,
    new_request,
    now_ms,
    reply_for,
    to_headers,
)
from bus.errors import RemoteError
from bus.runtime.client import MeshClient
from bus.security.identity import Identity
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.security.reply_match import (
    Expected,
    ReplyRefused,
    UnexpectedKind,
    UnexpectedReplier,
    UnexpectedReplyType,
    refusal,
)
from bus.security.signing import sign
from bus.topics import BadOperationName
from bus.transport.memory import MemoryBroker, MemoryTransport
from tests.support import identities

REPLIES = "mesh.replies"
PARTITION = 1


def _request(operation: str = "orders.create") -> Envelope:
    return new_request(source="gateway", operation=operation, value=b"{}",
                       reply_to=ReplyTo(REPLIES, PARTITION), deadline_ms=now_ms() + 10_000)


def _reply(to: Envelope, source: str = "orders", **changes: object) -> Envelope:
    return replace(reply_for(to, source=source, value=b'{"ok":true}'), **changes)  # type: ignore[arg-type]


def test_the_owner_s_reply_or_error_to_the_operation_called_is_accepted() -> None:
    request = _request()
    expected = Expected.call(request.correlation_id or "", "orders.create")
    assert expected.replier == "orders"
    assert refusal(expected, _reply(request)) is None
    error = reply_for(request, source="orders", value=b'{"code":"x"}', error=True)
    assert refusal(expected, error) is None


@pytest.mark.parametrize(("changes", "refused"), [
    ({"source": "inventory"}, UnexpectedReplier),
    ({"source": "gateway"}, UnexpectedReplier),
    ({"type": "orders.quote"}, UnexpectedReplyType),
    ({"type": "inventory.stock"}, UnexpectedReplyType),
    ({"kind": KIND_REQUEST}, UnexpectedKind),
    ({"kind": KIND_EVENT}, UnexpectedKind),
    ({"correlation_id": "someone-else"}, ReplyRefused),
    # Wrong on two counts: the replier is the reason given (identity before content).
    ({"source": "inventory", "type": "inventory.stock"}, UnexpectedReplier),
])
def test_anything_else_is_refused_with_its_own_reason(changes: dict[str, object],
                                                     refused: type[ReplyRefused]) -> None:
    request = _request()
    expected = Expected.call(request.correlation_id or "", "orders.create")
    reason = refusal(expected, replace(_reply(request), **changes))  # type: ignore[arg-type]
    assert type(reason) is refused
    assert reason is not None
    assert reason.retriable is False


def test_codes_are_distinct_and_stable() -> None:
    assert (UnexpectedReplier.code, UnexpectedReplyType.code, UnexpectedKind.code) == (
        "unexpected_replier", "unexpected_reply_type", "unexpected_kind")


def test_a_policy_owner_overrides_the_name_and_a_bad_name_has_no_owner() -> None:
    request = _request()
    expected = Expected.call(request.correlation_id or "", "orders.create", owner="legacy")
    assert type(refusal(expected, _reply(request))) is UnexpectedReplier
    assert refusal(expected, _reply(request, source="legacy")) is None
    with pytest.raises(BadOperationName):
        Expected.call("c", "no-dot")


# --- MeshClient + ReplyListener ---------------------------------------------------------


@pytest.fixture
def broker() -> MemoryBroker:
    broker = MemoryBroker()
    for topic, partitions in (("orders.requests", 1), (REPLIES, 4), (QUARANTINE_TOPIC, 1)):
        broker.create_topic(topic, partitions=partitions)
    return broker


@pytest.fixture
def mesh() -> dict[str, Identity]:
    return identities({"gateway": ["orders.requests"], "orders": [REPLIES],
                       "inventory": [REPLIES]})


@pytest.fixture
async def client(broker: MemoryBroker, mesh: dict[str, Identity]) -> AsyncIterator[MeshClient]:
    settings = BusSettings(service_name="gateway", reply_partition=PARTITION, max_attempts=1)
    client = MeshClient(MemoryTransport(broker), settings, mesh["gateway"])
    yield client
    await client.close()


def _send(broker: MemoryBroker, identity: Identity, envelope: Envelope) -> None:
    assert identity.signing_key is not None
    signed = sign(envelope, REPLIES, identity.signing_key)
    broker.append(REPLIES, PARTITION, None, signed.value, to_headers(signed))


async def _pending_request(broker: MemoryBroker) -> Envelope:
    for _ in range(200):
        records = broker.partition("orders.requests", 0)
        if records:
            return from_record(records[-1].headers, records[-1].value)
        await asyncio.sleep(0.01)
    raise AssertionError("the request was never sent")


def _parked(broker: MemoryBroker) -> list[str]:
    return [dict(r.headers)[H_REASON].decode() for r in broker.partition(QUARANTINE_TOPIC, 0)]


async def _until(condition: object, what: str) -> None:
    for _ in range(300):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_hijacked_replies_are_quarantined_and_the_call_gets_the_owner_s_answer(
    broker: MemoryBroker, client: MeshClient, mesh: dict[str, Identity]
) -> None:
    call = asyncio.create_task(client.request("orders.create", {"n": 1}, timeout_s=10))
    request = await _pending_request(broker)
    hijacks = [
        (mesh["inventory"], reply_for(request, source="inventory", value=b'{"total":"0"}')),
        (mesh["inventory"], reply_for(request, source="inventory", error=True,
                                      value=b'{"code":"not_found","message":"hijacked"}')),
        (mesh["orders"], replace(reply_for(request, source="orders", value=b'{"x":1}'),
                                 type="orders.quote")),
    ]
    for identity, envelope in hijacks:
        _send(broker, identity, envelope)
    await _until(lambda: len(_parked(broker)) == 3, "the hijacks were not all parked")
    assert not call.done()  # still waiting for the genuine answer
    _send(broker, mesh["orders"], reply_for(request, source="orders", value=b'{"real":1}'))
    assert await asyncio.wait_for(call, 5) == {"real": 1}
    assert _parked(broker) == ["unexpected_replier", "unexpected_replier",
                               "unexpected_reply_type"]
    assert client.quarantined == 3


async def test_the_owner_s_genuine_error_still_reaches_the_caller(
    broker: MemoryBroker, client: MeshClient, mesh: dict[str, Identity]
) -> None:
    call = asyncio.create_task(client.request("orders.create", {"n": 1}, timeout_s=10))
    request = await _pending_request(broker)
    _send(broker, mesh["orders"], reply_for(request, source="orders", error=True,
                                            value=b'{"code":"invalid_input","message":"m"}'))
    with pytest.raises(RemoteError) as raised:
        await asyncio.wait_for(call, 5)
    assert raised.value.remote_code == "invalid_input"
    assert _parked(broker) == []


async def test_a_foreign_reply_for_another_caller_s_call_is_ignored_not_quarantined(
    broker: MemoryBroker, client: MeshClient, mesh: dict[str, Identity]
) -> None:
    listener = await client.start()
    probe = listener.expect("probe", "orders.create")
    stranger = _request()  # another instance's call on the same partition
    _send(broker, mesh["inventory"], reply_for(stranger, source="inventory", value=b"{}"))
    _send(broker, mesh["orders"], replace(
        reply_for(stranger, source="orders", value=b"{}"), correlation_id="probe"))
    assert (await asyncio.wait_for(probe, 5)).source == "orders"
    assert listener.ignored == 1
    assert _parked(broker) == []
