"""Structured logs: one JSON object per line, for CloudWatch Logs (Insights reads the fields).

Fields: ``timestamp`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
``service``; inside a recording or remote OpenTelemetry span ``trace_id`` and ``span_id``
(lowercase hex, as in ``traceparent``, so a line finds its trace); inside a mesh handler
(``bus.context.current_message``) ``operation`` (the message's ``ce_type``),
``message_id`` and ``correlation_id``; ``exception`` (the formatted traceback) and
``stack`` when there is one. ``json.dumps`` escapes every newline, so a record is always one
line, whatever its message or traceback holds. Values passed with ``extra=`` that JSON can
carry are kept under their own keys (others as their ``repr``).

``setup_logging(service, level=INFO, stream=None, env=None)`` replaces the root handlers
with one stream handler (stdout: what Lambda and the workers' log files collect) using this
formatter, or, with ``MESH_LOG_FORMAT=text``, the plain human format the workers used.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final

from opentelemetry import trace

from bus.context import current_message

ENV_FORMAT: Final = "MESH_LOG_FORMAT"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: not copied as extras.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}
_JSON_TYPES: Final = (str, int, float, bool, type(None))


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, _JSON_TYPES):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _JSON_TYPES) for v in value):
        return list(value)
    return repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module notes)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = f"{context.trace_id:032x}"
            entry["span_id"] = f"{context.span_id:016x}"
        message = current_message.get()
        if message is not None:
            entry["operation"] = message.type
            entry["message_id"] = message.id
            if message.correlation_id is not None:
                entry["correlation_id"] = message.correlation_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = _plain(value)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def formatter_for(service: str, env: Mapping[str, str] | None = None) -> logging.Formatter:
    """JSON unless ``MESH_LOG_FORMAT=text`` (for humans reading a terminal)."""
    chosen = (os.environ if env is None else env).get(ENV_FORMAT, "json").strip().lower()
    if chosen == "text":
        return logging.Formatter(TEXT_FORMAT)
    return JsonFormatter(service)


def setup_logging(
    service: str,
    level: int = logging.INFO,
    *,
    stream: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Route the root logger to one handler with ``formatter_for(service)``; returns it.

    Replaces the root's handlers (Lambda's runtime installs its own plain one), so calling it
    twice leaves one handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(formatter_for(service, env))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
