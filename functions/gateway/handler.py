"""Lambda entry point: ``functions.gateway.handler.handler``.

The app is built once per process, at import, from the policy bundled into the zip
(``meshgate-policy.json``, or ``MESH_POLICY_FILE``); the mesh client (Kafka clients, identity
from Secrets Manager) and the AWS clients behind the stores are created on first use, and
Mangum keeps one event loop per process so they survive warm invocations.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from functions.gateway.wiring import build_app
from functions.shared.json_logs import setup_logging
from functions.shared.otel_setup import FLUSH_TIMEOUT_S, setup_telemetry

# OTEL_* variables (functions.shared.otel_setup); None, and no SDK import, without them.
_telemetry = setup_telemetry("gateway")
setup_logging("gateway")  # stdout is CloudWatch Logs: JSON lines with the trace ids
app = build_app()
_adapter = Mangum(app, lifespan="off")
FLUSH_MARGIN_MS = 500


def flush_budget_s(context: Any) -> float:
    """How long the spans may take to leave: FLUSH_TIMEOUT_S, less near the Lambda timeout."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return FLUSH_TIMEOUT_S
    return max(min(FLUSH_TIMEOUT_S, (float(remaining()) - FLUSH_MARGIN_MS) / 1000), 0.0)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        response: dict[str, Any] = _adapter(event, context)
    finally:
        if _telemetry is not None:  # a frozen instance exports nothing: send before returning
            _telemetry.force_flush(flush_budget_s(context))
    return response
