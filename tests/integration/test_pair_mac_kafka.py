"""Per-pair MACs on the real broker (bus.security.pair_mac): a call between two services that
accept them travels with a MAC both ways (read back from the broker), and what another
service's valid key can make of them is refused and parked, next to the genuine call.
"""

from __future__ import annotations

import pytest

from bus.config import BusSettings
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.pair_mac import PairHeader, is_pair_mac, parse_pair_header
from bus.security.quarantine import H_REASON
from bus.transport import Record
from bus.transport.kafka import KafkaTransport
from tests.integration.test_bus_kafka import calculator, caller, quarantined, running, wait_until
from tests.support import identities

pytestmark = pytest.mark.integration
CALLER = "itest-caller"
INTRUDER = "itest-intruder"
REPLIES = "mesh.replies"


def pair_mesh(service_name: str, *, accepting: tuple[str, ...]) -> dict[str, Identity]:
    topic = f"{service_name}.requests"
    return identities({CALLER: [topic], service_name: [REPLIES], INTRUDER: [topic]},
                      pair_mac=accepting)


def request_from(source: str, service_name: str) -> Envelope:
    return new_request(source=source, operation=f"{service_name}.add", value=b'{"a":1,"b":2}',
                       reply_to=ReplyTo(REPLIES, 0), deadline_ms=now_ms() + 30_000)


def forgeries(service_name: str, mesh: dict[str, Identity]) -> dict[str, Envelope]:
    """What the intruder's own valid key makes of a request claiming to come from the caller."""
    topic = f"{service_name}.requests"
    intruder = mesh[INTRUDER]
    receiver = intruder.keyring.for_service(service_name)[0] if intruder.keyring else None
    assert intruder.pair is not None
    assert intruder.signing_key is not None
    assert receiver
    # A genuine MAC of the intruder's pair, with the caller's name as ce_source.
    own_pair = intruder.pair.seal(request_from(CALLER, service_name), topic,
                                  intruder.signing_key, receiver)
    # The same MAC relabelled as made by the caller's key.
    header = parse_pair_header(own_pair.signature or "")
    caller_key = mesh[CALLER].signing_key
    assert caller_key is not None
    relabelled = own_pair.with_signature(
        PairHeader(caller_key.key_id, header.receiver_key_id, header.mac).encode())
    return {"sender_mismatch": own_pair, "bad_signature": relabelled}


async def records_of(transport: KafkaTransport, topic: str, partitions: range,
                     wanted: set[str]) -> dict[str, Record]:
    """The records of ``topic`` whose correlation id is in ``wanted``, read from the start."""
    found: dict[str, Record] = {}
    for partition in partitions:
        reader = transport.assigned_reader(topic, partition, from_beginning=True)
        await reader.start()
        try:
            empty = 0
            while empty < 3 and len(found) < len(wanted):
                batch = await reader.read(0.5)
                empty = 0 if batch else empty + 1
                for record in batch:
                    envelope = from_record(record.headers, record.value)
                    if (envelope.correlation_id or envelope.id) in wanted:
                        found[envelope.kind] = record
        finally:
            await reader.stop()
    return found


async def test_a_call_between_accepting_services_carries_macs_both_ways_and_forgeries_park(
    service_name: str, bus_settings: BusSettings,
) -> None:
    mesh = pair_mesh(service_name, accepting=(CALLER, service_name))
    topic = f"{service_name}.requests"
    calls: list[str] = []
    forged = forgeries(service_name, mesh)
    transport = KafkaTransport(bus_settings)
    try:
        for envelope in forged.values():
            await transport.send(topic, envelope.value, headers=to_headers(envelope))
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker, \
                caller(bus_settings, mesh[CALLER]) as client:
            answer = await client.request(f"{service_name}.add", {"a": 2, "b": 3}, timeout_s=20)
            await wait_until(lambda: worker.quarantined >= len(forged))
        parked = await quarantined(transport, topic, len(forged))
        genuine = calls[0]
        request = (await records_of(transport, topic, range(3), {genuine}))["request"]
        sent = from_record(request.headers, request.value)
        assert sent.reply_to is not None
        reply = (await records_of(transport, REPLIES, range(sent.reply_to.partition,
                                                            sent.reply_to.partition + 1),
                                  {sent.correlation_id or sent.id}))["reply"]
    finally:
        await transport.close()
    assert answer == {"sum": 5, "from": CALLER}
    assert calls == [genuine]  # no forgery reached the handler
    assert sorted(dict(r.headers)[H_REASON].decode() for r in parked) == sorted(forged)
    request_mac = parse_pair_header(sent.signature or "")
    reply_sig = from_record(reply.headers, reply.value).signature
    assert is_pair_mac(reply_sig)
    reply_mac = parse_pair_header(reply_sig or "")
    # Each way its own pair of keys: caller -> service, then service -> caller.
    assert (request_mac.sender_key_id, request_mac.receiver_key_id) == (
        reply_mac.receiver_key_id, reply_mac.sender_key_id)


async def test_a_receiver_that_did_not_opt_in_parks_pair_macs_and_takes_signatures(
    service_name: str, bus_settings: BusSettings,
) -> None:
    topic = f"{service_name}.requests"
    stale = pair_mesh(service_name, accepting=(service_name,))
    # The caller's copy of the policy says the service accepts pair MACs; the service's own,
    # in force, says it does not (and the genuine call is then signed).
    in_force = AccessPolicy.from_dict({CALLER: [topic], service_name: [REPLIES]})
    mesh = {name: Identity(name, stale[name].signing_key, stale[name].keyring, in_force)
            for name in (CALLER, service_name)}
    sealed = stale[CALLER].outgoing(request_from(CALLER, service_name), topic)
    assert is_pair_mac(sealed.signature)
    calls: list[str] = []
    transport = KafkaTransport(bus_settings)
    try:
        await transport.send(topic, sealed.value, headers=to_headers(sealed))
        async with running(calculator(service_name, calls), bus_settings, mesh) as worker, \
                caller(bus_settings, mesh[CALLER]) as client:
            answer = await client.request(f"{service_name}.add", {"a": 1, "b": 1}, timeout_s=20)
            await wait_until(lambda: worker.quarantined >= 1)
        parked = await quarantined(transport, topic, 1)
    finally:
        await transport.close()
    assert answer["sum"] == 2
    assert len(calls) == 1
    assert [dict(r.headers)[H_REASON].decode() for r in parked] == ["bad_signature"]
