"""The files ``meshgate new service`` writes, as Python format strings (``{name}``, ...).

Literal braces in the generated code are doubled (``{{``)."""

from __future__ import annotations

SERVICE = '''"""Handlers of the ``{name}`` service (from ``meshgate new service``; yours to
edit).

Payload shape: a handler gets one JSON object. Through an HTTP route, the gateway merges the
route's path parameters (``/v1/{name}/{{{key}}}`` gives ``{{"{key}": "..."}}``), its query
parameters and the JSON body's fields into that object, after checking them against the
route's schemas in ``policies/{name}.yaml``. A handler's return value (a dict or a pydantic
model) is the reply, and the HTTP answer's body.

Errors: raise ``HandlerError(code, message)``; the gateway maps the code to a status:
``not_found`` (or ``*_not_found``) -> 404, ``invalid*`` or ``insufficient*`` -> 422,
``forbidden`` -> 403, a retriable error -> 503, anything else -> 502 (never with internals).
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from bus.envelope import Envelope
from bus.errors import HandlerError
from bus.service import Payload, Service

{var} = Service("{name}")


class Request(BaseModel):
    {key}: str


class Item(BaseModel):
    {key}: str
    name: str


def parse(payload: Payload) -> Request:
    try:
        return Request.model_validate(payload)
    except ValidationError as exc:
        raise HandlerError("invalid_request", str(exc.errors()[0]["msg"])) from exc


def lookup(request: Request) -> Item:
    """A pure decision, easy to test: replace with your own."""
    if request.{key}.startswith("missing-"):
        raise HandlerError("not_found", f"no {name} item {{request.{key}!r}}")
    return Item({key}=request.{key}, name=f"{name} item {{request.{key}}}")
{handlers}'''

HANDLER = '''

@{var}.operation("{operation}")
async def {function}(payload: Payload, message: Envelope) -> Item:
    return lookup(parse(payload))
'''

WORKER = '''"""Run the ``{name}`` service as a long-lived worker:
``python -m functions.{name}.worker``.

``meshgate up`` starts it because ``policies/{name}.yaml`` declares the service and this file
exists (``infra.local.workers``)."""

from __future__ import annotations

from functions.shared.worker_main import main

from .service import {var}

if __name__ == "__main__":
    main({var})
'''

LAMBDA = '''"""Lambda entry point of the ``{name}`` service fed by a Kafka event source mapping:
``functions.{name}.lambda_handler.handler``.

The same handlers as the worker, run by ``bus.runtime.eventsource.runner`` as
``functions/orders/lambda_handler.py`` does: one event loop, transport, identity and durable
idempotency store per warm instance; returns the partial batch response.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bus.config import BusSettings
from bus.envelope import now_ms
from bus.runtime.eventsource.records import MalformedKafkaEvent, parse_event
from bus.runtime.eventsource.runner import KafkaEventRunner
from bus.runtime.worker import ServiceWorker
from bus.telemetry.mesh_telemetry import MeshTelemetry
from functions.shared.durable_store import durable_store
from functions.shared.kafka_connect import kafka_transport
from functions.shared.key_reload import load_live_identity, refresh_before_invocation
from functions.shared.otel_setup import flush_budget_s, setup_telemetry

from .service import {var}

log = logging.getLogger(__name__)
SAFETY_MARGIN_MS = 2_000  # stop starting records this long before Lambda's own timeout
NO_CONTEXT_BUDGET_MS = 30_000
START_TIMEOUT_S = 20.0


class _Instance:
    """What one Lambda instance keeps between invocations (created lazily, once)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._runner: KafkaEventRunner | None = None
        self.telemetry = setup_telemetry({var}.name)

    async def runner(self) -> KafkaEventRunner:
        if self._runner is None:
            settings = BusSettings.resolve(service_name={var}.name)
            store = durable_store(settings, f"{{{var}.name}} Kafka-event function")
            async with asyncio.timeout(START_TIMEOUT_S):  # a blocking AWS call, in a thread
                identity = await asyncio.to_thread(load_live_identity, settings)
            transport = kafka_transport(settings)
            telemetry = MeshTelemetry({var}.name)
            identity.access.check_consume({var}.name, {var}.request_topic)

            def new_worker() -> ServiceWorker:
                return ServiceWorker({var}, transport, settings, identity, store=store,
                                     telemetry=telemetry)

            self._runner = KafkaEventRunner(new_worker, transport, settings)
        return self._runner


INSTANCE = _Instance()


def handler(event: object, context: Any) -> dict[str, Any]:
    try:
        batch = parse_event(event)
    except MalformedKafkaEvent as exc:  # a direct invocation: refused, nothing dropped
        log.warning("unreadable Kafka event refused: %s", exc)
        return {{"statusCode": 400, "error": exc.code, "message": str(exc)}}
    remaining = (context.get_remaining_time_in_millis() if context is not None
                 else NO_CONTEXT_BUDGET_MS)
    refresh_before_invocation()

    async def run() -> dict[str, Any]:
        runner = await INSTANCE.runner()
        deadline_ms = now_ms() + max(remaining - SAFETY_MARGIN_MS, 0)
        result = await runner.run(batch, deadline_ms=deadline_ms)
        return result.response

    try:
        return INSTANCE.loop.run_until_complete(run())
    finally:
        if INSTANCE.telemetry is not None:
            INSTANCE.telemetry.force_flush(flush_budget_s(context))
'''

TEST = '''"""The ``{name}`` service on the in-memory mesh (``bus.testing.MeshTestKit``):
signed as on the real mesh, no Kafka. Written by ``meshgate new service``."""

from __future__ import annotations

import pytest

from bus.errors import RemoteError
from bus.testing import MeshTestKit
from functions.{name}.service import {var}


async def test_{var}_answers_{first_function}() -> None:
    async with MeshTestKit(services=[{var}]) as kit:
        answer = await kit.client("gateway").request("{first}", {{"{key}": "a-1"}})
    assert answer == {{"{key}": "a-1", "name": "{name} item a-1"}}


async def test_{var}_says_not_found() -> None:
    async with MeshTestKit(services=[{var}]) as kit:
        with pytest.raises(RemoteError) as caught:
            await kit.client("gateway").request("{first}", {{"{key}": "missing-1"}})
    assert caught.value.remote_code == "not_found"  # HTTP 404 through a route
'''

POLICY = '''# The {name} service (written by `meshgate new service`). Merged with every
# policies/*.yaml; check with `meshgate policy check`.

services:
  {name}:
    operations: [{operations}]

topics:
  {name}.requests:
    partitions: 3
    retention_ms: 86400000

access:
  {name}:
    produce: [mesh.replies, mesh.async.replies]
{routes}'''

ROUTE = '''
routes:
  - method: {method}
    path: {path}
    operation: {operation}
    auth: none
    timeout_ms: 5000
    rate_limit: {{per_second: 20, burst: 40}}
{params}    response_schema: {{$ref: schemas/{name}-item.json}}
'''

ITEM_SCHEMA = '''{{
  "type": "object",
  "required": ["{key}", "name"],
  "properties": {{
    "{key}": {{"type": "string"}},
    "name": {{"type": "string"}}
  }}
}}
'''
