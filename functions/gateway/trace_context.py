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
from typing import Final, NamedTuple

XRAY_HEADER: Final = "x-amzn-trace-id"
_XRAY_NAME: Final = XRAY_HEADER.encode()
_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_PARENT = re.compile(r"[0-9a-fA-F]{16}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# bus.telemetry.tracing's W3C form (version 00, lowercase hex), matched on the raw bytes.
_W3C = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ZERO_TRACE_BYTES = _ZERO_TRACE.encode()
_ZERO_SPAN_BYTES = _ZERO_SPAN.encode()


class IncomingTrace(NamedTuple):  # a tuple: built on every request, ~4x cheaper than frozen
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
        if name == b"traceparent":
            if traceparent is None:
                traceparent = value
        elif name == b"tracestate":
            if tracestate is None:
                tracestate = value
        elif name == _XRAY_NAME and xray is None:
            xray = value
    if traceparent is not None:
        w3c = _W3C.fullmatch(traceparent.strip())
        if w3c is not None and w3c.group(1) != _ZERO_TRACE_BYTES \
                and w3c.group(2) != _ZERO_SPAN_BYTES:
            state = tracestate.decode("latin-1").strip() if tracestate is not None else None
            return IncomingTrace(w3c.group(0).decode("ascii"), state or None, "traceparent")
    from_xray = xray_traceparent(None if xray is None else xray.decode("latin-1"))
    if from_xray is not None:
        return IncomingTrace(from_xray, None, "xray")
    return None
