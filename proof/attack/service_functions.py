"""Batches a service's Kafka-triggered Lambda must not serve, invoked directly on the deployed
functions of the real emulator (one generic handler, bound to its service by its environment;
``functions.kafka_service``).

At each service's function, for every other service on Lambda:

1. *misdirected*: a genuine request, signed by a caller the policy lets call the other
   service, on the other service's request topic (a mapping pointed at the wrong function, or
   an event made up by whoever may invoke it): parked on ``mesh.quarantine`` as
   ``unexpected_topic``, never handled by this service;

and once per function:

2. *not allowed*: a request on the function's own topic, signed with the key of a service the
   policy does not let call that operation: parked as ``not_allowed``.

The control: a genuine request on the function's own topic, answered by the function with a
reply from its service. "Reached a handler" is a reply to the case's correlation id.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus.config import BusSettings
from bus.envelope import Envelope, ReplyTo, from_record, new_request, now_ms, to_headers
from bus.errors import MeshError
from bus.policy.model import Policy
from bus.runtime.eventsource.records import kafka_event
from bus.security.quarantine import H_REASON, QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.topics import REPLY_TOPIC, request_topic
from bus.transport import Reader, Record
from bus.transport.kafka import KafkaTransport
from infra.deploy import aws as deploy
from infra.errors import InfraError
from infra.keys import mesh_keys
from infra.policy import load_policy
from infra.settings import Settings
from infra.stack.parts import services
from proof.attack.accounting import CONTROL, Outcome

CATEGORY = "service_function_batches"
REPLY_PARTITIONS = 16
QUARANTINE_PARTITIONS = 3
ANSWER_WAIT_S = 20.0  # a refused case is judged once its quarantine record is seen


@dataclass(frozen=True)
class Case:
    label: str
    function: str  # the deployed function's name
    record: Record
    correlation_id: str
    expected: str | None  # the quarantine reason; None for the control


def callers(policy: Policy, operation: str) -> tuple[str | None, str | None]:
    """A service allowed to call ``operation`` (the edge first) and one that is not (another
    service first, else the owner itself)."""
    owner = policy.owner_of(operation)
    names = sorted(policy.services, key=lambda name: (name != "gateway", name == owner))
    allowed = next((n for n in names if policy.may_call(n, operation)), None)
    refused = next((n for n in names if not policy.may_call(n, operation)), None)
    return allowed, refused


def signed(settings: Settings, sender: str, operation: str, topic: str, reply_partition: int,
           keys: dict[str, Any]) -> Envelope:
    if sender not in keys:
        keys[sender] = mesh_keys.read_secret(settings, sender).current
    request = new_request(source=sender, operation=operation, value=b"{}",
                          reply_to=ReplyTo(REPLY_TOPIC, reply_partition),
                          deadline_ms=now_ms() + 25_000)
    return sign(request, topic, keys[sender])


def plan(settings: Settings, policy: Policy, outputs: dict[str, str],
         reply_partition: int) -> list[Case]:
    """Synchronous (reads the senders' keys from Secrets Manager)."""
    on_lambda = [s for s in services.lambda_services(policy, settings)
                 if services.output_id(s) in outputs]
    keys: dict[str, Any] = {}
    cases: list[Case] = []

    def case(label: str, function: str, sender: str, service: str, topic: str,
             expected: str | None) -> None:
        operation = policy.services[service].operations[0]
        envelope = signed(settings, sender, operation, topic, reply_partition, keys)
        record = Record(topic, 0, random.randrange(1 << 40), envelope.value,
                        headers=to_headers(envelope))
        cases.append(Case(label, function, record, envelope.correlation_id or "", expected))

    for target in on_lambda:
        function = outputs[services.output_id(target)]
        operation = policy.services[target].operations[0]
        allowed, refused = callers(policy, operation)
        if allowed is not None:
            case(f"{target} function: a genuine {operation}", function, allowed, target,
                 request_topic(target), None)
        if refused is not None:
            case(f"{target} function: {operation} signed by {refused}, which may not call it",
                 function, refused, target, request_topic(target), "not_allowed")
        for other in on_lambda:
            other_operation = policy.services[other].operations[0]
            other_caller, _ = callers(policy, other_operation)
            if other == target or other_caller is None:
                continue
            case(f"{target} function: a genuine {other_operation} on {request_topic(other)}",
                 function, other_caller, other, request_topic(other), "unexpected_topic")
    return cases


def invoke(settings: Settings, case: Case) -> dict[str, Any]:
    event = kafka_event([case.record], bootstrap_servers=settings.kafka_bootstrap,
                        timestamp_ms=now_ms())
    result = deploy.client(settings, "lambda").invoke(FunctionName=case.function,
                                                      Payload=json.dumps(event).encode())
    answer = json.loads(result["Payload"].read())
    if result.get("FunctionError"):
        return {"function_error": answer}
    return dict(answer)


async def watch(readers: Sequence[Reader], replies: Reader, cases: list[Case],
                deadline: float) -> tuple[dict[str, str], set[str]]:
    """Quarantine reasons and replies by correlation id, until every refused case is parked
    and every control answered (or the deadline)."""
    reasons: dict[str, str] = {}
    answered: set[str] = set()
    wanted = {c.correlation_id for c in cases}
    refused = {c.correlation_id for c in cases if c.expected is not None}
    controls = wanted - refused
    while time.monotonic() < deadline and not (refused <= set(reasons)
                                               and controls <= answered):
        for reader in readers:
            for record in await reader.read(0.2):
                key = correlation_of(record)
                if key in wanted:
                    reasons[key] = dict(record.headers).get(H_REASON, b"").decode()
        for record in await replies.read(0.2):
            key = correlation_of(record)
            if key in wanted:
                answered.add(key)
    return reasons, answered


def correlation_of(record: Record) -> str:
    """The record's correlation id, or "" for a record that is no envelope (others' cases
    share these topics)."""
    try:
        return from_record(record.headers, record.value).correlation_id or ""
    except MeshError:
        return ""


async def run_service_functions(settings: Settings,
                                timeout_s: float) -> tuple[list[Outcome], list[str]]:
    try:
        outputs = await asyncio.to_thread(deploy.stack_outputs, settings) or {}
        policy = load_policy(settings.root / "policies")
        reply_partition = random.randrange(REPLY_PARTITIONS)
        cases = await asyncio.to_thread(plan, settings, policy, outputs, reply_partition)
    except InfraError as exc:
        return [], [f"{CATEGORY}: no deployed service functions to invoke ({exc})"]
    if not any(c.expected for c in cases):
        return [], [f"{CATEGORY}: fewer than two services on Lambda, nothing to misdirect"]
    transport = KafkaTransport(BusSettings.resolve(bootstrap_servers=settings.kafka_bootstrap,
                                                   service_name="attack-service-functions"))
    quarantine = [transport.assigned_reader(QUARANTINE_TOPIC, p)
                  for p in range(QUARANTINE_PARTITIONS)]
    replies = transport.assigned_reader(REPLY_TOPIC, reply_partition)
    answers: dict[str, dict[str, Any]] = {}
    try:
        for reader in [*quarantine, replies]:
            await reader.start()
        for case in cases:
            answers[case.correlation_id] = await asyncio.to_thread(invoke, settings, case)
        reasons, answered = await watch(quarantine, replies, cases,
                                        time.monotonic() + min(timeout_s, ANSWER_WAIT_S))
    except MeshError as exc:
        return [], [f"{CATEGORY}: the broker did not answer ({exc})"]
    finally:
        for reader in [*quarantine, replies]:
            await reader.stop()
        await transport.close()
    outcomes: list[Outcome] = []
    for case in cases:
        answer = answers[case.correlation_id]
        ran = int(case.correlation_id in answered)
        if case.expected is None:
            outcomes.append(Outcome(CONTROL, f"service functions: {case.label}", False, ran,
                                    "answered" if ran else f"no answer ({answer})"[:80]))
            continue
        reason = reasons.get(case.correlation_id, "not quarantined")
        clean = answer == {"batchItemFailures": []} and reason == case.expected
        outcomes.append(Outcome(CATEGORY, case.label, clean, ran,
                                reason if clean else f"{reason}; {answer}"[:80]))
    return outcomes, []
