"""Reply hijack through the real HTTP endpoint: a foreign aiokafka client watches
``orders.requests`` for a marked ``POST /v1/orders`` and answers on the request's reply
partition before ``orders`` does, with a reply (and, in a second call, an error reply) signed
by the REAL ``inventory`` key from the emulator's Secrets Manager. The deployed gateway must
park the hijack (read back from ``mesh.quarantine``) and answer with orders' genuine reply
(``handled_by: orders``: the control).

If ``orders`` answered first, the gateway rightly ignores the late hijack (no call waits for
it): that try proves nothing and is made again, at most ``TRIES`` times.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bus.security.keys import SigningKey, signing_key_from_bytes
from bus.security.quarantine import QUARANTINE_TOPIC
from infra.deploy import aws as deploy
from infra.kafka.connect import door_kwargs
from infra.keys import identity
from infra.settings import Settings
from proof.attack.accounting import CONTROL, Outcome
from proof.attack.bus_probe import end_offsets
from proof.attack.mesh_attack import parked
from proof.attack.reply_cases import HIJACK, Reply, answer, error_body, order_created, taken
from proof.attack.reply_hijack import PARK_WAIT_S, next_request, watch_requests, write

TOPIC = "orders.requests"
REPLIES = "mesh.replies"
HIJACKER = "inventory"
TRIES = 3
HTTP_TIMEOUT_S = 30.0
LINES = [{"sku": "atk-1", "quantity": 1, "unit_price": "1.00"}]


def service_key(settings: Settings, service: str) -> SigningKey:
    """``service``'s real signing key, from the emulator's Secrets Manager (blocking)."""
    secrets = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, f"signing key of {service}"):
        raw = secrets.get_secret_value(SecretId=identity.secret_name(settings, service))
    return signing_key_from_bytes(bytes(raw["SecretBinary"]))


def genuine(status: int, text: str, token: str) -> bool:
    """orders' own answer to the marked order."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return (status == 201 and isinstance(body, dict) and body.get("handled_by") == "orders"
            and body.get("customer") == token)


async def _try(http: httpx.AsyncClient, endpoint: str, bootstrap: str,
               consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, key: SigningKey,
               error: bool, deadline: float) -> tuple[Reply | None, str, str, int, str]:
    """One hijacked call: (the hijack, its quarantine reason, the answer, status, token)."""
    token = f"hj{uuid.uuid4().hex[:12]}"
    since = await end_offsets(bootstrap, [QUARANTINE_TOPIC])
    call = asyncio.create_task(http.post(f"{endpoint}/v1/orders", timeout=HTTP_TIMEOUT_S,
                                         json={"customer": token, "lines": LINES}))
    hostile: Reply | None = None
    position = (-1, -1)
    try:
        request = await next_request(consumer, token, min(deadline, time.monotonic() + 30))
        if request is not None:
            body = error_body("not_found", token) if error else order_created(token, HIJACKER)
            hostile = answer(request, HIJACKER, key, body, error=error,
                             token=f"hijacked {token}" if error else f"hijacked-{token}",
                             label=f"{HIJACKER}'s key answers POST /v1/orders first"
                                   f" ({'error reply' if error else 'reply'})")
            position = await write(producer, hostile)
        response = await asyncio.wait_for(call, HTTP_TIMEOUT_S + 5)
    finally:
        if not call.done():
            call.cancel()
            await asyncio.wait({call}, timeout=5)
    text = response.text
    if hostile is None:
        return None, "", text, response.status_code, token
    wait = 1.0 if taken(text, hostile) else PARK_WAIT_S
    reasons = await parked(bootstrap, since, REPLIES, {position},
                           min(deadline, time.monotonic() + wait))
    return hostile, reasons.get(position, ""), text, response.status_code, token


async def run_edge_hijack(settings: Settings, endpoint: str, rounds: int, timeout_s: float
                          ) -> tuple[list[Outcome], list[str]]:
    deadline = time.monotonic() + timeout_s
    bootstrap = settings.kafka_bootstrap
    key = await asyncio.to_thread(service_key, settings, HIJACKER)
    outcomes: list[Outcome] = []
    notes: list[str] = []
    consumer = await watch_requests(bootstrap, TOPIC)
    producer = AIOKafkaProducer(**door_kwargs(bootstrap), acks="all", linger_ms=0)
    await asyncio.wait_for(producer.start(), 15)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(rounds):
                for error in (False, True):
                    for attempt in range(1, TRIES + 1):
                        hostile, reason, text, status, token = await _try(
                            http, endpoint, bootstrap, consumer, producer, key, error, deadline)
                        won = hostile is not None and (reason or taken(text, hostile))
                        if won or attempt == TRIES:
                            break  # else orders answered first: not a finding, try again
                    outcomes += _outcomes(hostile, reason, text, status, token)
    finally:
        await producer.stop()
        await consumer.stop()
    return outcomes, notes


def _outcomes(hostile: Reply | None, reason: str, text: str, status: int, token: str
              ) -> list[Outcome]:
    good = genuine(status, text, token)
    control = Outcome(CONTROL, "orders' genuine answer to a hijacked POST /v1/orders", False,
                      1 if good else 0, "handled_by: orders" if good else f"{status} {text[:80]}")
    if hostile is None:
        return [Outcome(HIJACK, "hijack: the marked request never reached orders.requests",
                        False, 0, f"{status} {text[:60]}"), control]
    took = taken(text, hostile)
    why = reason or ("taken: the caller answered "
                     f"{status} {text[:60]}" if took else "orders always answered first")
    return [Outcome(HIJACK, hostile.label, bool(reason) and good, 1 if took else 0, why),
            control]
