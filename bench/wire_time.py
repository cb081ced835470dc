"""Micro-benchmark of the v4 wire format's hot path: ``ce_time`` as RFC 3339 text.

``python -m bench.wire_time`` prints nanoseconds per call (best of 5 runs of N calls) for:
formatting and parsing ``ce_time`` (``bus.wire_time``: fixed-width slicing, a cached date)
against the general-purpose standard library ways and against v3's decimal epoch ms; and the
per-message envelope work (``to_headers``, ``from_record``, ``canonical_bytes``) as a whole.
A number to read, never a pass/fail.
"""

from __future__ import annotations

import argparse
import re
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from bus.envelope import ReplyTo, from_record, new_request, to_headers
from bus.security.signing import canonical_bytes
from bus.wire_time import format_ms, parse_ms

MS = 1_767_225_600_123
TEXT = format_ms(MS)
_V3_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _stdlib_format(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _stdlib_parse(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def _v3_parse(text: str) -> int:
    if not _V3_INTEGER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def cases() -> dict[str, Callable[[], object]]:
    request = new_request(source="gateway", operation="orders.create", value=b'{"a":1}',
                          reply_to=ReplyTo("mesh.replies", 3), deadline_ms=MS + 10_000,
                          at_ms=MS)
    headers = to_headers(request)
    return {
        "format ce_time (bus.wire_time)": lambda: format_ms(MS),
        "format ce_time (datetime.strftime)": lambda: _stdlib_format(MS),
        "format v3 ce_time (str(int))": lambda: str(MS),
        "parse ce_time (bus.wire_time)": lambda: parse_ms(TEXT),
        "parse ce_time (datetime.fromisoformat)": lambda: _stdlib_parse(TEXT),
        "parse v3 ce_time (regex + int)": lambda: _v3_parse(str(MS)),
        "to_headers (a request)": lambda: to_headers(request),
        "from_record (a request)": lambda: from_record(headers, request.value),
        "canonical_bytes (a request)": lambda: canonical_bytes(request, "orders.requests"),
    }


def measure(number: int) -> dict[str, float]:
    """Nanoseconds per call of each case, best of five runs."""
    return {name: min(timeit.repeat(call, number=number, repeat=5)) / number * 1e9
            for name, call in cases().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ce_time and envelope micro-benchmark")
    parser.add_argument("--number", type=int, default=50_000, help="calls per run")
    args = parser.parse_args(argv)
    for name, ns in measure(args.number).items():
        print(f"{name:42s} {ns:8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
