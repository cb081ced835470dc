"""A second language on the real broker: a Java program written from docs/wire-format.md
alone (tests/interop/java/, JDK + the broker's kafka-clients and jackson jars) reads a Python
call's request and reply from the broker and verifies both signatures, refuses a copy with any
signed byte changed, and calls a Python worker as its own service ``java-client-<id>`` (a
fresh Ed25519 key in the keyring, allowed by the access map), connected as its own broker
identity (SCRAM-SHA-512 over the SASL_SSL listener, the ACLs its policy derives); the worker
answers and the Java side verifies the reply. A copy it tampers with after signing is
quarantined by the worker. And every test vector under tests/vectors/ checks out in Java as
the files say, the per-pair MAC vectors included (X25519 and HKDF from the document, with the
JDK's XDH)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope
from bus.policy.model import Policy
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.keys import encode_b64url
from bus.service import Payload, Service
from bus.transport.kafka import KafkaTransport
from infra.local.kafka_env import ca_file
from infra.settings import Settings
from tests.integration.test_bus_kafka import wait_until
from tests.interop.broker_identity import broker_identity
from tests.interop.java_build import JavaProgram
from tests.support import identities

pytestmark = pytest.mark.integration
VECTORS = Path(__file__).resolve().parent.parent / "vectors"
CALL_TIMEOUT_S = 20.0
JAVA_TIMEOUT_S = 90.0
ALICE = '{"method":"jwt","sub":"alice"}'
CALLER = "gateway"  # an edge (tests.support): its request carries a principal and assertion
# Every field the signature covers that a request carries (docs/wire-format.md), plus the
# topic it was sent to; a reply has no reply address and no principal.
SIGNED_REQUEST = {"topic", "ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
                  "mesh_kind", "mesh_correlation_id", "mesh_reply_to", "mesh_deadline",
                  "content-type", "mesh_principal", "mesh_principal_sig", "value"}
SIGNED_REPLY = SIGNED_REQUEST - {"mesh_reply_to", "mesh_principal", "mesh_principal_sig"}


@pytest.fixture
async def topics(bootstrap: str) -> AsyncIterator[tuple[str, str, str]]:
    """A fresh service name, its request topic and a reply topic of the test's own (two
    partitions each: the Python caller reads replies on 0, the Java caller on 1)."""
    name = f"interop{uuid.uuid4().hex[:10]}"
    requests, replies = f"{name}.requests", f"{name}.replies"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(requests, 2, 1), NewTopic(replies, 2, 1)])
        yield name, requests, replies
        await admin.delete_topics([requests, replies])
    finally:
        await admin.close()


def echo_service(name: str) -> Service:
    service = Service(name)

    @service.operation(f"{name}.echo")
    async def echo(payload: Payload, message: Envelope) -> Payload:
        return {"echo": payload, "from": message.source}

    return service


async def serve(stack: AsyncExitStack, service: Service, settings: BusSettings,
                identity: Identity) -> ServiceWorker:
    transport = KafkaTransport(settings)
    worker = ServiceWorker(service, transport, settings, identity,
                           store=MemoryIdempotencyStore())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def halt() -> None:
        stop.set()
        await asyncio.wait_for(task, 15)
        await transport.close()

    stack.push_async_callback(halt)
    return worker


async def run_java(java: JavaProgram, *args: str) -> tuple[int, dict[str, Any]]:
    """Run the verifier; its exit status and the one JSON object it printed."""
    process = await asyncio.create_subprocess_exec(
        *java.command(*args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), JAVA_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    lines = out.decode().strip().splitlines()
    assert lines, f"the Java verifier printed nothing; stderr:\n{err.decode()[-3000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert process.returncode is not None
    return process.returncode, result


async def test_java_verifies_python_and_python_answers_java(
        topics: tuple[str, str, str], bootstrap: str, java: JavaProgram,
        infra_settings: Settings, tmp_path: Path) -> None:
    name, requests, replies = topics
    java_service = f"java-client-{name.removeprefix('interop')}"
    mesh = identities({CALLER: [requests], name: [replies], java_service: [requests]})
    keyring = mesh[name].keyring
    java_key, caller_key = mesh[java_service].signing_key, mesh[CALLER].signing_key
    assert keyring is not None
    assert java_key is not None
    assert caller_key is not None
    (tmp_path / "keyring.json").write_text(json.dumps(keyring.to_dict()))
    (tmp_path / "java-client.key").write_text(encode_b64url(java_key.secret))
    common = ["--keyring", str(tmp_path / "keyring.json"), "--window-ms", "300000",
              "--timeout-ms", str(int(CALL_TIMEOUT_S * 1000))]
    # What the broker lets the Java service do: call the worker, read its replies.
    policy = Policy.from_json(json.dumps({
        "services": {name: {"operations": [f"{name}.echo"]}, java_service: {}},
        "topics": {requests: {"partitions": 2}, replies: {"partitions": 2}},
        "access": {name: {"produce": [replies]},
                   java_service: {"call": [f"{name}.*"], "consume": [replies]}}}))
    settings = {service: BusSettings.resolve(bootstrap_servers=bootstrap, service_name=service,
                                             reply_topic=replies, reply_partition=0)
                for service in mesh}
    async with AsyncExitStack() as stack:
        worker = await serve(stack, echo_service(name), settings[name], mesh[name])
        caller = MeshClient(KafkaTransport(settings[CALLER]), settings[CALLER], mesh[CALLER])
        stack.push_async_callback(caller.close)
        answer = await caller.request(f"{name}.echo", {"n": 1}, timeout_s=CALL_TIMEOUT_S,
                                      principal=ALICE)
        assert answer == {"echo": {"n": 1}, "from": CALLER}

        # (1) Java reads the request and its reply from the broker and checks both.
        status, seen = await run_java(java, "observe", *common, "--bootstrap", bootstrap,
                                      "--request-topic", requests, "--reply-topic", replies,
                                      "--reply-partition", "0")
        assert seen["request"]["verified"], seen["request"]
        assert seen["request"]["ce_source"] == CALLER
        assert seen["request"]["key_id"] == caller_key.key_id
        assert seen["request"]["mesh_principal"] == ALICE
        assert seen["request"]["principal_asserted"]
        assert seen["reply"]["verified"], seen["reply"]
        assert seen["reply"]["ce_source"] == name
        assert json.loads(seen["reply"]["value"]) == answer
        tampered = {(entry["record"], entry["field"]): entry for entry in seen["tampered"]}
        assert set(tampered) == ({("request", f) for f in SIGNED_REQUEST}
                                 | {("reply", f) for f in SIGNED_REPLY})
        assert [key for key, entry in tampered.items() if not entry["refused"]] == []
        # A changed byte breaks the signature, or the envelope before it is checked.
        assert {entry["code"] for entry in tampered.values()} <= {"bad_signature",
                                                                  "bad_envelope"}
        assert status == 0
        assert seen["ok"]

        # (2) Java calls the worker as its own service, connected as its own broker user;
        # the worker answers, Java verifies.
        config = await stack.enter_async_context(broker_identity(
            bootstrap, infra_settings.secure_bootstrap, policy, java_service,
            ca_file(infra_settings), tmp_path))
        call = [*common, "--bootstrap", infra_settings.secure_bootstrap,
                "--kafka-config", str(config), "--topic", requests,
                "--operation", f"{name}.echo", "--source", java_service,
                "--key-id", java_key.key_id,
                "--key-file", str(tmp_path / "java-client.key"),
                "--reply-topic", replies, "--reply-partition", "1"]
        status, called = await run_java(java, "call", *call, "--payload", '{"n":2}')
        assert called["reply"]["verified"], called["reply"]
        assert json.loads(called["reply"]["value"]) == {"echo": {"n": 2},
                                                       "from": java_service}
        assert called["reply"]["ce_source"] == name
        assert status == 0
        assert called["ok"]
        assert worker.handled == 2

        # The control for (2): the same call with one value byte changed after signing is
        # refused by the worker (quarantined), never handled, never answered.
        status, forged = await run_java(java, "call", *call, "--payload", '{"n":3}',
                                        "--timeout-ms", "3000", "--tamper", "value")
        assert forged == {"request_id": forged["request_id"], "ok": False,
                          "reply_missing": True}
        assert status == 1
        await wait_until(lambda: worker.quarantined == 1)
        assert worker.handled == 2


async def test_java_checks_every_wire_format_vector(java: JavaProgram) -> None:
    """Each valid vector: Java rebuilds its signed bytes (and the principal assertion's and the
    replay countersignature's) byte for byte, verifies it, and signs it again to the same
    signature; each tampered record gets the refusal code the file names (or is accepted
    where only unsigned headers changed)."""
    status, checked = await run_java(java, "vectors", "--dir", str(VECTORS))
    messages = json.loads((VECTORS / "messages.json").read_text())["messages"]
    records = json.loads((VECTORS / "tampered.json").read_text())["records"]
    assert [entry["name"] for entry in checked["messages"]] == [m["name"] for m in messages]
    for entry, vector in zip(checked["messages"], messages, strict=True):
        expected = {"signed_bytes", "verified", "same_signature"}
        expected |= {"assertion_bytes"} if "principal_assertion" in vector else set()
        expected |= {"countersign_bytes"} if "replay_countersignature" in vector else set()
        assert {name for name, value in entry.items() if value is True} == expected, entry
    assert [(entry["name"], entry["got"]) for entry in checked["tampered"]] == [
        (record["name"], record["expect"]) for record in records]
    # Per-pair MACs (docs/wire-format.md §3a), opened with the receiver's seed alone: the
    # file's verdicts, and for the valid ones the same pair key from both ends.
    pairs = json.loads((VECTORS / "pair.json").read_text())["vectors"]
    assert [(entry["name"], entry["got"], entry["signed_bytes"]) for entry in checked["pair"]] == [
        (vector["name"], vector["expect"], True) for vector in pairs]
    assert [entry.get("same_pair_key") for entry in checked["pair"]] == [
        True if vector["expect"] == "valid" else None for vector in pairs]
    assert status == 0
    assert checked["ok"]


async def test_java_verifies_events_python_signed_in_batches(
        topics: tuple[str, str, str], bootstrap: str, java: JavaProgram, tmp_path: Path
        ) -> None:
    """Events a Python service publishes concurrently share signatures (one per event-loop
    turn, docs/wire-format.md §3b): Java reads every one from the broker and verifies it alone
    with the sender's public key, and refuses each with one value bit changed."""
    name, events_topic, _ = topics
    mesh = identities({name: [events_topic]})
    keyring = mesh[name].keyring
    assert keyring is not None
    (tmp_path / "keyring.json").write_text(json.dumps(keyring.to_dict()))
    settings = BusSettings.resolve(bootstrap_servers=bootstrap, service_name=name)
    publisher = MeshClient(KafkaTransport(settings), settings, mesh[name])
    count = 40
    try:
        await asyncio.gather(*(publisher.publish(events_topic, f"{name}.happened", {"n": n})
                               for n in range(count)))
    finally:
        await publisher.close()
    status, checked = await run_java(
        java, "events", "--keyring", str(tmp_path / "keyring.json"), "--window-ms", "300000",
        "--timeout-ms", str(int(CALL_TIMEOUT_S * 1000)), "--bootstrap", bootstrap,
        "--topic", events_topic, "--count", str(count))
    assert checked["refusals"] == []
    assert (checked["events"], checked["verified"], checked["tampered_refused"]) == (
        count, count, count)
    assert checked["batch_signed"] >= count // 2, checked  # most shared a signature
    assert status == 0
    assert checked["ok"]
