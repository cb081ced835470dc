"""``meshgate trace TRACE_ID | --last [--file PATH]``: one trace from the local collector's
span file (``.local/telemetry/spans.jsonl``, ``infra.local.collector``) printed as a tree."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infra.cli.trace_tree import (
    Node,
    build_tree,
    count,
    last_trace_id,
    normalize_trace_id,
    render,
)
from infra.errors import InfraError
from infra.local.span_log import read_rows, rotated
from infra.settings import Settings
from infra.stack.otel_env import SPANS_FILE, telemetry_dir


class TraceNotFound(InfraError):
    """No spans of the asked trace (yet): the exporters may still be sending."""

    retriable = True


def register(commands: Any) -> None:
    """Add ``trace`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    trace = commands.add_parser("trace", help="print a trace as a tree from the local collector")
    trace.add_argument("trace_id", nargs="?",
                       help="32 hex, a traceparent or an X-Ray Root (or use --last)")
    trace.add_argument("--last", action="store_true", help="the most recent trace")
    trace.add_argument("--file", type=Path,
                       help=f"a span file (default: .local/telemetry/{SPANS_FILE})")


def trace_lines(path: Path, trace_id: str | None, *, last: bool = False) -> list[str]:
    if not path.exists() and not rotated(path).exists():
        raise InfraError(f"no span file at {path}",
                         "start the local collector with `meshgate up`, or pass --file")
    if last == (trace_id is not None):
        raise InfraError("name one trace", "pass a TRACE_ID or --last, not both")
    if last:
        wanted = last_trace_id(read_rows(path))
        if wanted is None:
            raise TraceNotFound(f"{path} holds no spans", "send a request, then retry")
    else:
        assert trace_id is not None
        wanted = normalize_trace_id(trace_id)
        if wanted is None:
            raise InfraError(f"{trace_id!r} is not a trace id",
                             "pass 32 hex digits, a traceparent or an X-Ray Root")
    roots = build_tree(read_rows(path), wanted)
    if not roots:
        raise TraceNotFound(f"trace {wanted} has no spans in {path}",
                            "wait a second for the exporters and retry, or check the id")
    services = sorted({str(node.span.get("service.name")) for node in _all(roots)})
    header = f"trace {wanted}: {count(roots)} spans, services {', '.join(services)}"
    return [header, *render(roots)]


def _all(roots: list[Node]) -> list[Node]:
    found: list[Node] = []
    for node in roots:
        found += [node, *_all(node.children)]
    return found


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = args.file or telemetry_dir(settings) / SPANS_FILE
    for line in trace_lines(path, args.trace_id, last=args.last):
        print(line, flush=True)
    return 0
