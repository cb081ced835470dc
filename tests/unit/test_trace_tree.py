"""infra.cli.trace_tree and infra.cli.trace: a trace from span rows as a tree; the CLI's
one-line failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.cli.trace import TraceNotFound, trace_lines
from infra.cli.trace_tree import build_tree, last_trace_id, normalize_trace_id, render
from infra.errors import InfraError

T = "0af7651916cd43dd8448eb211c80319c"
OTHER = "1" * 32


def row(span: str, parent: str | None, name: str, service: str, start: int, end: int, *,
        trace: str = T, status: str = "UNSET", kind: str = "INTERNAL") -> dict[str, Any]:
    return {"trace_id": trace, "span_id": span, "parent_span_id": parent, "name": name,
            "service.name": service, "kind": kind, "start_ns": start * 1_000_000,
            "end_ns": end * 1_000_000, "status": status, "attributes": {}}


ROWS = [
    row("b" * 16, "a" * 16, "process orders.requests", "orders", 5, 30, kind="CONSUMER"),
    row("a" * 16, "f" * 16, "GET /v1/products/{sku}", "gateway", 0, 40, kind="SERVER"),
    row("c" * 16, "b" * 16, "inventory.stock", "orders", 8, 20, status="ERROR",
        kind="CLIENT"),
    row("d" * 16, "b" * 16, "send mesh.replies", "orders", 25, 26, kind="PRODUCER"),
    row("9" * 16, None, "elsewhere", "orders", 50, 60, trace=OTHER),
    row("b" * 16, "a" * 16, "process orders.requests", "orders", 5, 30),  # a re-export
]


def test_tree_roots_at_the_span_whose_parent_was_not_exported() -> None:
    [root] = build_tree(ROWS, T)
    assert root.span["name"] == "GET /v1/products/{sku}"
    [process] = root.children
    assert [child.span["name"] for child in process.children] == [
        "inventory.stock", "send mesh.replies"]


def test_render_draws_service_kind_duration_offset_and_errors() -> None:
    assert render(build_tree(ROWS, T)) == [
        "GET /v1/products/{sku} [gateway] server 40.0 ms +0.0 ms",
        "└─ process orders.requests [orders] consumer 25.0 ms +5.0 ms",
        "   ├─ inventory.stock [orders] client 12.0 ms +8.0 ms ERROR",
        "   └─ send mesh.replies [orders] producer 1.0 ms +25.0 ms",
    ]


def test_the_last_trace_is_the_one_that_ended_last() -> None:
    assert last_trace_id(ROWS) == OTHER
    assert last_trace_id([]) is None


@pytest.mark.parametrize(("text", "expected"), [
    (T, T), (T.upper(), T), (f"00-{T}-b7ad6b7169203331-01", T),
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
     "5759e988bd862e3fe1be46a994272793"),
    ("1-5759e988-bd862e3fe1be46a994272793", "5759e988bd862e3fe1be46a994272793"),
    ("nope", None), (T[:-1], None),
])
def test_trace_ids_in_the_forms_people_paste(text: str, expected: str | None) -> None:
    assert normalize_trace_id(text) == expected


def test_cli_lines_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    with pytest.raises(InfraError, match="no span file"):
        trace_lines(path, T)
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    lines = trace_lines(path, f"00-{T}-b7ad6b7169203331-01")
    assert lines[0] == f"trace {T}: 4 spans, services gateway, orders"
    assert lines[1].startswith("GET /v1/products/{sku} [gateway]")
    assert trace_lines(path, None, last=True)[0].startswith(f"trace {OTHER}: 1 spans")
    with pytest.raises(TraceNotFound, match="has no spans"):
        trace_lines(path, "2" * 32)
    with pytest.raises(InfraError, match="not a trace id"):
        trace_lines(path, "xyz")
    with pytest.raises(InfraError, match="not both"):
        trace_lines(path, T, last=True)
