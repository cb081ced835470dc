"""One trace's spans as a tree (pure: rows of ``infra.local.otlp_decode.span_rows`` in, text out).

``normalize_trace_id(text)``: a trace id from 32 hex, a W3C traceparent, or an X-Ray
``Root=1-<8>-<24>`` / ``1-<8>-<24>``; None when it is none of these.
``last_trace_id(rows)``: the trace of the span that ended last.
``build_tree(rows, trace_id)``: the trace's spans (duplicates dropped) as ``Node`` trees;
the roots are spans without a parent or whose parent was not exported (e.g. the caller's
span named by an incoming ``traceparent``), ordered by start time, children too.
``render(roots)``: lines ``<tree> <name> [<service>] <kind> <duration> +<offset> <status>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_HEX32 = re.compile(r"[0-9a-f]{32}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_XRAY = re.compile(r"(?:root=)?1-([0-9a-f]{8})-([0-9a-f]{24})(?:;.*)?")


def normalize_trace_id(text: str) -> str | None:
    value = text.strip().lower()
    if _HEX32.fullmatch(value):
        return value
    if match := _TRACEPARENT.fullmatch(value):
        return match.group(1)
    if match := _XRAY.fullmatch(value):
        return match.group(1) + match.group(2)
    return None


def last_trace_id(rows: Iterable[Mapping[str, Any]]) -> str | None:
    best: tuple[int, str] | None = None
    for row in rows:
        trace_id, end = row.get("trace_id"), row.get("end_ns")
        if isinstance(trace_id, str) and isinstance(end, int) and (best is None or end > best[0]):
            best = (end, trace_id)
    return best[1] if best is not None else None


@dataclass
class Node:
    span: Mapping[str, Any]
    children: list[Node] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return int(self.span.get("start_ns") or 0)

    @property
    def duration_ms(self) -> float:
        return (int(self.span.get("end_ns") or 0) - self.start_ns) / 1e6


def build_tree(rows: Iterable[Mapping[str, Any]], trace_id: str) -> list[Node]:
    nodes: dict[str, Node] = {}
    for row in rows:
        span_id = row.get("span_id")
        if row.get("trace_id") == trace_id and isinstance(span_id, str):
            nodes.setdefault(span_id, Node(row))
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(str(node.span.get("parent_span_id")))
        (parent.children if parent is not None and parent is not node else roots).append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.start_ns)
    return sorted(roots, key=lambda n: n.start_ns)


def _line(node: Node, origin_ns: int) -> str:
    span = node.span
    status = str(span.get("status") or "UNSET")
    text = (f"{span.get('name')} [{span.get('service.name') or '?'}] "
            f"{str(span.get('kind') or '').lower()} {node.duration_ms:.1f} ms "
            f"+{(node.start_ns - origin_ns) / 1e6:.1f} ms")
    if status == "ERROR":
        message = span.get("status_message") or span.get("attributes", {}).get("error.type")
        text += f" ERROR{': ' + str(message) if message else ''}"
    return text


def render(roots: list[Node]) -> list[str]:
    if not roots:
        return []
    origin = min(root.start_ns for root in roots)
    lines: list[str] = []

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + _line(node, origin))
        inner = prefix if top else prefix + ("   " if last else "│  ")
        for index, child in enumerate(node.children):
            walk(child, inner, index == len(node.children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return lines


def count(roots: list[Node]) -> int:
    return sum(1 + count(node.children) for node in roots)
