"""How ``meshgate tail`` prints a call: a fixed-width text line, one JSON object, or (on a
terminal) the same text line with colours. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Final

from infra.cli.tail.match import FORGED, HIJACK, OK, UNSIGNED, Call

COLUMNS: Final = (("TIME (UTC)", 12), ("OPERATION", 22), ("CALLER -> CALLEE", 26),
                  ("LATENCY", 9), ("RESULT", 18), ("SIGNATURE", 9), ("PRINCIPAL", 0))


def clock(ms: int) -> str:
    """``HH:MM:SS.mmm`` in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def latency_text(ms: int | None) -> str:
    return "-" if ms is None else f"{ms} ms"


def cells(call: Call) -> tuple[str, ...]:
    route = f"{call.caller or '?'} -> {call.callee or '?'}"
    result = call.result if call.attempts == 1 else f"{call.result} ({call.attempts} tries)"
    return (clock(call.at_ms), call.operation, route, latency_text(call.latency_ms), result,
            call.signature, call.principal or "-")


def _line(values: tuple[str, ...]) -> str:
    parts = [value.ljust(width) if width else value
             for value, (_, width) in zip(values, COLUMNS, strict=True)]
    return "  ".join(parts).rstrip()


def header() -> str:
    return _line(tuple(name for name, _ in COLUMNS))


def text_line(call: Call) -> str:
    line = _line(cells(call))
    if call.detail:
        line += f"  ({call.detail})"
    return line


def json_line(call: Call) -> str:
    return json.dumps(call.to_dict(), separators=(",", ":"))


def style_of(call: Call) -> str:
    """A rich style for the call's line on a terminal."""
    if call.signature == FORGED or call.result == HIJACK:
        return "bold red"
    if call.signature == UNSIGNED:
        return "magenta"
    return "green" if call.result == OK else "yellow"
