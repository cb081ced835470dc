"""W3C trace context helpers (full OpenTelemetry spans come with the mesh client issue)."""

from __future__ import annotations

import os
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    ids = os.urandom(24).hex()  # one read for the trace id and the span id: 0.65 us, not 1.2
    return f"00-{ids[:32]}-{ids[32:]}-01"


def trace_id(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    return match.group(1) if match else None


def valid_traceparent(text: str | None) -> str | None:
    """``text`` if it is a well-formed W3C traceparent, else None (never forward junk)."""
    return text if text is not None and trace_id(text) is not None else None


def child_of(traceparent: str | None) -> str:
    """A traceparent in the same trace with a new span id (a new trace if none is valid)."""
    parent_trace = trace_id(traceparent)
    if parent_trace is None:
        return new_traceparent()
    return f"00-{parent_trace}-{secrets.token_hex(8)}-01"
