"""Every service the policy runs on Lambda, deployed on the real emulator: its function (the
one generic handler, told its service by its environment) answers a signed request, given as
the self-managed Kafka event and as the MSK event a mapping sends, with a reply signed by that
service's own key, on the real broker. The emulator never polls Kafka (its mappings are inert),
so the functions are invoked directly, as the mappings would; the mappings are in the stack.

Expectations come from the loaded policy: a service added with ``meshgate new service`` is
covered without editing this file.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bus.config import BusSettings
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.runtime.eventsource.records import kafka_event
from bus.security.keys import KeyRing
from bus.security.signing import verify
from bus.topics import REPLY_TOPIC, request_topic
from bus.transport import Record
from bus.transport.kafka import KafkaTransport
from infra.deploy import aws as deploy
from infra.policy import load_policy
from infra.settings import Settings
from infra.stack.parts import services
from tests.support import sender_identity

pytestmark = pytest.mark.e2e
REPLY_PARTITIONS = 16
WAIT_S = 30.0
CLUSTER_ARN = "arn:aws:kafka:us-east-1:000000000000:cluster/mesh/e2e-0000-1111"


def lambda_services(settings: Settings) -> list[str]:
    return services.lambda_services(load_policy(settings.root / "policies"), settings)


@pytest.fixture
async def transport(settings: Settings) -> AsyncIterator[KafkaTransport]:
    kafka = KafkaTransport(BusSettings.resolve(bootstrap_servers=settings.kafka_bootstrap,
                                               service_name="e2e-service-functions"))
    try:
        yield kafka
    finally:
        await kafka.close()


def caller_of(settings: Settings, operation: str) -> str:
    """A service the policy lets call ``operation`` (the edge first)."""
    policy = load_policy(settings.root / "policies")
    callers = sorted(policy.services, key=lambda name: name != "gateway")
    return next(name for name in callers if policy.may_call(name, operation))


def invoke(settings: Settings, name: str, event: dict[str, Any]) -> Any:
    result = deploy.client(settings, "lambda").invoke(FunctionName=name,
                                                      Payload=json.dumps(event).encode())
    payload = json.loads(result["Payload"].read())
    assert "FunctionError" not in result, payload
    return payload


def test_every_lambda_service_has_its_function_role_and_mapping(settings: Settings) -> None:
    names = lambda_services(settings)
    assert names, "the policy runs services on Lambda"
    cfn = deploy.client(settings, "cloudformation")
    resources = {r["LogicalResourceId"]: r["ResourceType"] for r in
                 cfn.describe_stack_resources(StackName=settings.stack_name)["StackResources"]}
    lam = deploy.client(settings, "lambda")
    outputs = deploy.stack_outputs(settings) or {}
    for service in names:
        assert resources[services.function_id(service)] == "AWS::Lambda::Function"
        assert resources[services.role_id(service)] == "AWS::IAM::Role"
        assert resources[services.mapping_id(service)] == "AWS::Lambda::EventSourceMapping"
        config = lam.get_function_configuration(
            FunctionName=outputs[services.output_id(service)])
        env = config["Environment"]["Variables"]
        assert env["MESH_SERVICE_NAME"] == service
        assert config["Handler"] == "functions.kafka_service.handler.handler"
        assert config["Role"].split("/")[-1].startswith(
            f"{settings.stack_name}-{services.role_id(service)}")


@pytest.mark.parametrize("shape", ["self-managed", "msk"])
async def test_each_service_function_answers_as_its_service(
        settings: Settings, transport: KafkaTransport, shape: str) -> None:
    policy = load_policy(settings.root / "policies")
    outputs = await asyncio.to_thread(deploy.stack_outputs, settings) or {}
    keyring = KeyRing.from_dict(json.loads(
        (settings.local_dir / "identity" / "keyring.json").read_text()))
    reply_partition = random.randrange(REPLY_PARTITIONS)
    replies = transport.assigned_reader(REPLY_TOPIC, reply_partition)
    await replies.start()
    try:
        for service in lambda_services(settings):
            operation = policy.services[service].operations[0]
            caller = caller_of(settings, operation)
            identity = await asyncio.to_thread(sender_identity, settings, caller)
            topic = request_topic(service)
            request: Envelope = identity.outgoing(new_request(
                source=caller, operation=operation, value=b"{}",
                reply_to=ReplyTo(REPLY_TOPIC, reply_partition),
                deadline_ms=now_ms() + 25_000), topic)
            record = Record(topic, 0, random.randrange(1 << 40), request.value,
                            headers=to_headers(request))
            event = (kafka_event([record], bootstrap_servers=settings.kafka_bootstrap,
                                 timestamp_ms=now_ms()) if shape == "self-managed"
                     else kafka_event([record], cluster_arn=CLUSTER_ARN, timestamp_ms=now_ms()))
            name = outputs[services.output_id(service)]
            assert await asyncio.to_thread(invoke, settings, name, event) == {
                "batchItemFailures": []}
            answer = await reply_to(replies, request.correlation_id or "")
            assert answer.source == service  # answered as the service...
            assert answer.correlation_id == request.correlation_id
            # ...signed with its own key, as the keyring the deploy published says
            assert verify(answer, REPLY_TOPIC, keyring).service == service
    finally:
        await replies.stop()


async def reply_to(reader: Any, correlation_id: str) -> Envelope:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for record in await reader.read(0.2):
            envelope = from_record(record.headers, record.value)
            if envelope.correlation_id == correlation_id:
                return envelope
    raise AssertionError(f"no reply to {correlation_id} in {WAIT_S:g}s ({uuid.uuid4().hex})")
