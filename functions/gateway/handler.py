"""Lambda entry point: ``functions.gateway.handler.handler``.

The app is built once per process, at import, from the policy bundled into the zip
(``meshgate-policy.json``, or ``MESH_POLICY_FILE``); the mesh client (Kafka clients, identity
from Secrets Manager) and the AWS clients behind the stores are created on first use, and
Mangum keeps one event loop per process so they survive warm invocations.
"""

# ruff: noqa: E402  (the collector is paused before the imports it would slow down)
from __future__ import annotations

from functions.shared import init_gc

init_gc.pause_collection()

import itertools
import logging
import uuid
from typing import Any

from mangum import Mangum

from functions.gateway.lambda_events import event_problem, refusal
from functions.gateway.wiring import build_app
from functions.shared.json_logs import setup_logging
from functions.shared.key_reload import refresh_before_invocation
from functions.shared.otel_setup import flush_budget_s, setup_telemetry

# OTEL_* variables (functions.shared.otel_setup); None, and no SDK import, without them.
_telemetry = setup_telemetry("gateway")
setup_logging("gateway")  # stdout is CloudWatch Logs: JSON lines with the trace ids
app = build_app()
_adapter = Mangum(app, lifespan="off")
init_gc.settle_for_serving()
log = logging.getLogger(__name__)
# This process's id and invocation count, in refusals of unreadable events (a direct invoker
# sees the process lived on) and in their log lines.
INSTANCE = uuid.uuid4().hex[:16]
_invocations = itertools.count(1)


def handler(event: object, context: Any) -> dict[str, Any]:
    invocation = next(_invocations)
    problem = event_problem(event)
    if problem is not None:  # never raise: the runtime would restart the process
        log.warning("unreadable event refused (instance %s, invocation %d): %s",
                    INSTANCE, invocation, problem)
        return refusal(problem, instance=INSTANCE, invocations=invocation)
    assert isinstance(event, dict)
    refresh_before_invocation()  # mesh keys, when due (a rotation may have moved on)
    try:
        response: dict[str, Any] = _adapter(event, context)
    finally:
        if _telemetry is not None:  # a frozen instance exports nothing: send before returning
            _telemetry.force_flush(flush_budget_s(context))
    return response
