"""Which trace an incoming HTTP request belongs to (pure: headers in, W3C traceparent out).

Order: a well-formed W3C ``traceparent`` (with its ``tracestate``); else the AWS X-Ray
header ``X-Amzn-Trace-Id`` (API Gateway, ALB, X-Ray SDKs), whose
``Root=1-<8 hex epoch>-<24 hex>`` is the 32-hex W3C trace id and ``Parent=<16 hex>`` the
parent span id (``Sampled=1`` sets the sampled flag; ``0``, ``?`` or none leave it clear,
as the AWS X-Ray propagator does); else nothing, and the gateway starts a new trace. An X-Ray
header without ``Parent`` names no span to continue, so it is not continued either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bus.telemetry.tracing import valid_traceparent

XRAY_HEADER: Final = "x-amzn-trace-id"
_XRAY_NAME: Final = XRAY_HEADER.encode()
_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_PARENT = re.compile(r"[0-9a-fA-F]{16}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True)
class IncomingTrace:
    traceparent: str
    tracestate: str | None
    source: str  # "traceparent" or "xray"


def xray_traceparent(header: str | None) -> str | None:
    """The W3C traceparent an ``X-Amzn-Trace-Id`` value names, or None when it names none."""
    if not header:
        return None
    fields: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name.strip().lower(), value.strip())
    root = _ROOT.fullmatch(fields.get("root", ""))
    parent = fields.get("parent", "")
    if root is None or _PARENT.fullmatch(parent) is None:
        return None
    trace_id = (root.group(1) + root.group(2)).lower()
    span_id = parent.lower()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    flags = "01" if fields.get("sampled") == "1" else "00"
    return f"00-{trace_id}-{span_id}-{flags}"


def incoming_trace(headers: Iterable[tuple[bytes, bytes]]) -> IncomingTrace | None:
    """The trace an ASGI request's raw headers continue (see the module doc)."""
    traceparent = tracestate = xray = None
    for name, value in headers:
        if name == b"traceparent" and traceparent is None:
            traceparent = value.decode("latin-1").strip()
        elif name == b"tracestate" and tracestate is None:
            tracestate = value.decode("latin-1").strip()
        elif name == _XRAY_NAME and xray is None:
            xray = value.decode("latin-1")
    w3c = valid_traceparent(traceparent)
    if w3c is not None and w3c.split("-")[1] != _ZERO_TRACE and w3c.split("-")[2] != _ZERO_SPAN:
        return IncomingTrace(w3c, tracestate or None, "traceparent")
    from_xray = xray_traceparent(xray)
    if from_xray is not None:
        return IncomingTrace(from_xray, None, "xray")
    return None
