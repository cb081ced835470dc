"""The service and topic graph of the policies, as Mermaid text or an SVG picture.

The renderers work on a tiny neutral model, :class:`Graph`, so they do not depend on how the
policies are written: :func:`graph_from_yaml` reads today's ``policies/mesh.yaml`` shape, and
the policy model of issue 4 can build a :class:`Graph` with an adapter of its own.

Edges follow the data: ``produces`` goes from a service to a topic, ``consumes`` from a topic
to a service, ``calls`` from a service to the service it calls. ``allowed`` is False for an
edge that the policies reference but do not allow (drawn dashed and labelled "denied").

The SVG layout is deterministic and pure Python: producing and calling services on the left,
topics in the middle, consuming and called services on the right (a service that does both
appears in both columns), calls routed in lanes under the topics. Same graph, same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from xml.sax.saxutils import escape, quoteattr

from bus.policy.model import Policy

EdgeKind = Literal["produces", "consumes", "calls"]
Format = Literal["mermaid", "svg"]

EDGE_KINDS: tuple[str, ...] = get_args(EdgeKind)
FORMATS: tuple[str, ...] = get_args(Format)


@dataclass(frozen=True)
class Edge:
    """One edge. ``produces``: service -> topic; ``consumes``: topic -> service; ``calls``:
    service -> service."""

    source: str
    target: str
    kind: EdgeKind
    allowed: bool = True


@dataclass
class Graph:
    services: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def validate(self) -> None:
        """Raise ValueError if an edge names a node the graph does not have."""
        services, topics = set(self.services), set(self.topics)
        for edge in self.edges:
            if edge.kind not in EDGE_KINDS:
                raise ValueError(f"edge {edge.source} -> {edge.target}: unknown kind {edge.kind!r}"
                                 f" (one of {', '.join(EDGE_KINDS)})")
            source_kind, target_kind = _endpoint_kinds(edge.kind)
            for name, kind in ((edge.source, source_kind), (edge.target, target_kind)):
                known = services if kind == "service" else topics
                if name not in known:
                    raise ValueError(f"{edge.kind} edge {edge.source} -> {edge.target}: "
                                     f"{name!r} is not one of the graph's {kind}s")


def _endpoint_kinds(kind: str) -> tuple[str, str]:
    if kind == "produces":
        return "service", "topic"
    if kind == "consumes":
        return "topic", "service"
    return "service", "service"


# --------------------------------------------------------------------------------------------
# Today's policies/mesh.yaml


def graph_from_policy(policy: Policy) -> Graph:
    """The graph of a policy: who produces to and consumes from which topic, and which
    service each HTTP route makes call which other (denied when the access map says no)."""
    topics = list(policy.topics)
    edges: list[Edge] = []
    for service in policy.services:
        edges.extend(Edge(service, topic, "produces")
                     for topic in policy.produce_topics(service) if topic in policy.topics)
        edges.extend(Edge(topic, service, "consumes")
                     for topic in policy.consume_topics(service) if topic in policy.topics)
    for route in policy.routes:
        for operation in route.operations():
            owner = policy.owner_of(operation)
            if owner is not None and route.caller in policy.services:
                edge = Edge(route.caller, owner, "calls", policy.may_call(route.caller,
                                                                           operation))
                if edge not in edges:
                    edges.append(edge)
    return Graph(services=list(policy.services), topics=topics, edges=edges)


def graph_from_files(paths: Path | Sequence[Path]) -> Graph:
    """The graph of the policies in ``paths`` (a file, a folder of ``*.yaml``, or a list)."""
    from infra.policy import load_policy  # infra.policy renders graphs through this module

    return graph_from_policy(load_policy(paths))


def render(graph: Graph, fmt: Format) -> str:
    """The graph as Mermaid flowchart text or as an SVG document."""
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "svg":
        return to_svg(graph)
    raise ValueError(f"unknown graph format {fmt!r} (one of {', '.join(FORMATS)})")


SERVICE_FILL, SERVICE_STROKE = "#e8f0fe", "#1a73e8"
TOPIC_FILL, TOPIC_STROKE = "#fef7e0", "#b06000"
ALLOWED_COLOUR, DENIED_COLOUR = "#3c4043", "#d93025"
TEXT_COLOUR, MUTED_COLOUR = "#202124", "#5f6368"


def _mermaid_ids(names: Sequence[str], prefix: str, taken: set[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in names:
        base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        ids[name] = candidate
    return ids


def _mermaid_label(name: str) -> str:
    return '"' + name.replace('"', "#quot;") + '"'


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``flowchart LR``: services rounded, topics as cylinders, allowed edges solid,
    denied edges dashed and labelled "denied" (and red, through ``linkStyle``)."""
    graph.validate()
    taken: set[str] = set()
    service_ids = _mermaid_ids(graph.services, "svc", taken)
    topic_ids = _mermaid_ids(graph.topics, "topic", taken)
    lines = ["flowchart LR"]
    lines += [f"    {service_ids[s]}({_mermaid_label(s)})" for s in graph.services]
    lines += [f"    {topic_ids[t]}[({_mermaid_label(t)})]" for t in graph.topics]
    denied: list[str] = []
    for index, edge in enumerate(graph.edges):
        source_kind, target_kind = _endpoint_kinds(edge.kind)
        source = (service_ids if source_kind == "service" else topic_ids)[edge.source]
        target = (service_ids if target_kind == "service" else topic_ids)[edge.target]
        if not edge.allowed:
            arrow = "-.->|denied|"
            denied.append(str(index))
        elif edge.kind == "calls":
            arrow = "-->|calls|"
        else:
            arrow = "-->"
        lines.append(f"    {source} {arrow} {target}")
    lines.append(f"    classDef service fill:{SERVICE_FILL},stroke:{SERVICE_STROKE}")
    lines.append(f"    classDef topic fill:{TOPIC_FILL},stroke:{TOPIC_STROKE}")
    if graph.services:
        lines.append(f"    class {','.join(service_ids.values())} service")
    if graph.topics:
        lines.append(f"    class {','.join(topic_ids.values())} topic")
    if denied:
        style = f"stroke:{DENIED_COLOUR},color:{DENIED_COLOUR}"
        lines.append(f"    linkStyle {','.join(denied)} {style}")
    return "\n".join(lines) + "\n"


# SVG geometry, in px.
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
FONT_SIZE = 13
CHAR_W = 8.0  # a generous average advance for FONT at FONT_SIZE
MARGIN = 24
NODE_H = 38
PITCH = 58
GAP = 170
MIN_W = 120
PAD_W = 28
HEADER_Y = 84  # baseline of the column headers; the title and counts are above it
LANE_PITCH = 22
CYL_RY = 6.0
LEGEND_NOTE = (
    "Arrows follow the messages. Senders produce or call; receivers consume or are called",
    "(a service that does both is drawn twice); calls run in lanes under the topics.",
)


def _n(value: float) -> str:
    """A coordinate, the same text for the same value on every run."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text_w(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * CHAR_W * size / FONT_SIZE


@dataclass(frozen=True)
class _Box:
    name: str
    kind: Literal["service", "topic"]
    x: float
    y: float
    w: float

    @property
    def mid(self) -> float:
        return self.y + NODE_H / 2


def _order(columns: list[list[str]], edges: Sequence[Edge]) -> None:
    """Reorder each column in place by the barycentre of its neighbours (a few sweeps, ties by
    the current order): fewer crossings, same result every run."""
    links: list[tuple[tuple[int, str], tuple[int, str]]] = []
    for edge in edges:
        if edge.kind == "produces":
            links.append(((0, edge.source), (1, edge.target)))
        elif edge.kind == "consumes":
            links.append(((1, edge.source), (2, edge.target)))
        else:
            links.append(((0, edge.source), (2, edge.target)))
    for _ in range(3):
        for col in (1, 2, 0):
            where = {(c, name): (i + 0.5) / len(columns[c])
                     for c in range(3) for i, name in enumerate(columns[c])}
            keyed: list[tuple[float, int, str]] = []
            for index, name in enumerate(columns[col]):
                near = [where[b] for a, b in links if a == (col, name)]
                near += [where[a] for a, b in links if b == (col, name)]
                centre = sum(near) / len(near) if near else where[(col, name)]
                keyed.append((centre, index, name))
            columns[col][:] = [name for _, _, name in sorted(keyed)]


def to_svg(graph: Graph, title: str = "Service and topic graph") -> str:
    """A standalone SVG picture of the graph (layout described in the module docstring)."""
    graph.validate()
    has_out = {e.source for e in graph.edges if e.kind in ("produces", "calls")}
    has_in = {e.target for e in graph.edges if e.kind in ("consumes", "calls")}
    left = [s for s in graph.services if s in has_out or s not in has_in]
    middle = list(graph.topics)
    right = [s for s in graph.services if s in has_in]
    columns = [left, middle, right]
    _order(columns, graph.edges)

    widths = [max([MIN_W, *(_text_w(name) + PAD_W for name in column)]) for column in columns]
    xs = [float(MARGIN)]
    for width in widths[:-1]:
        xs.append(xs[-1] + width + GAP)
    rows = max(1, *(len(column) for column in columns))
    top = float(HEADER_Y + 8)
    boxes: list[dict[str, _Box]] = []
    for col, column in enumerate(columns):
        offset = top + (rows - len(column)) * PITCH / 2
        kind: Literal["service", "topic"] = "topic" if col == 1 else "service"
        boxes.append({name: _Box(name, kind, xs[col], offset + i * PITCH + (PITCH - NODE_H) / 2,
                                 widths[col]) for i, name in enumerate(column)})
    middle_bottom = (top + (rows - len(middle)) * PITCH / 2 + len(middle) * PITCH
                     if middle else top + rows * PITCH / 2)
    calls = [edge for edge in graph.edges if edge.kind == "calls"]
    lane_y = {i: middle_bottom + 4 + (k + 0.5) * LANE_PITCH
              for k, i in enumerate(i for i, e in enumerate(graph.edges) if e.kind == "calls")}
    graph_bottom = max(top + rows * PITCH, middle_bottom + len(calls) * LANE_PITCH + 8)

    # Endpoints: each edge gets its own port on the node's side, ordered by where it goes.
    ends: list[tuple[_Box, _Box]] = []
    for edge in graph.edges:
        if edge.kind == "produces":
            ends.append((boxes[0][edge.source], boxes[1][edge.target]))
        elif edge.kind == "consumes":
            ends.append((boxes[1][edge.source], boxes[2][edge.target]))
        else:
            ends.append((boxes[0][edge.source], boxes[2][edge.target]))
    ports: tuple[dict[int, float], dict[int, float]] = ({}, {})
    for side in (0, 1):
        by_node: dict[_Box, list[tuple[float, int]]] = {}
        for i, pair in enumerate(ends):
            node, other = pair[side], pair[1 - side]
            by_node.setdefault(node, []).append((lane_y.get(i, other.mid), i))
        for node, attached in by_node.items():
            attached.sort()
            body_top = node.y + (2 * CYL_RY if node.kind == "topic" else 0)
            body_h = node.y + NODE_H - body_top
            for k, (_, i) in enumerate(attached):
                ports[side][i] = body_top + body_h * (k + 1) / (len(attached) + 1)

    parts: list[str] = []
    labels: list[str] = []
    for i, edge in enumerate(graph.edges):
        a, b = ends[i]
        x1, y1, x2, y2 = a.x + a.w, ports[0][i], b.x, ports[1][i]
        if edge.kind == "calls":
            lane, xa, xb = lane_y[i], xs[1], xs[1] + widths[1]
            d = (f"M{_n(x1)},{_n(y1)} C{_n(x1 + GAP / 2)},{_n(y1)} {_n(x1 + GAP / 2)},{_n(lane)}"
                 f" {_n(xa)},{_n(lane)} L{_n(xb)},{_n(lane)} C{_n(x2 - GAP / 2)},{_n(lane)}"
                 f" {_n(x2 - GAP / 2)},{_n(y2)} {_n(x2)},{_n(y2)}")
            label_at = ((xa + xb) / 2, lane)
        else:
            dx = (x2 - x1) / 2
            d = (f"M{_n(x1)},{_n(y1)} C{_n(x1 + dx)},{_n(y1)} {_n(x2 - dx)},{_n(y2)}"
                 f" {_n(x2)},{_n(y2)}")
            label_at = ((x1 + x2) / 2, (y1 + y2) / 2)
        state = "allowed" if edge.allowed else "denied"
        colour = ALLOWED_COLOUR if edge.allowed else DENIED_COLOUR
        dash = "" if edge.allowed else ' stroke-dasharray="7 4"'
        verb = {"produces": "produces to", "consumes": "consumes", "calls": "calls"}[edge.kind]
        what = f"{edge.source} {verb} {edge.target} ({state})"
        parts.append(f'<path class="edge {edge.kind} {state}" d="{d}" fill="none"'
                     f' stroke="{colour}" stroke-width="1.6"{dash}'
                     f' marker-end="url(#arrow-{state})"><title>{escape(what)}</title></path>')
        text = "denied" if not edge.allowed else ("calls" if edge.kind == "calls" else "")
        if text:
            labels.append(_label(text, *label_at, colour))

    nodes = [_node(box) for placed in boxes for box in placed.values()]

    headers = ["senders", "topics", "receivers"]
    head = [f'<text x="{_n(xs[c] + widths[c] / 2)}" y="{HEADER_Y}"'
            f' text-anchor="middle" font-size="12" font-weight="bold"'
            f' fill="{MUTED_COLOUR}">{headers[c]}</text>' for c in range(3)]

    legend_top = graph_bottom + 24
    legend, legend_w = _legend(MARGIN, legend_top)
    width = max(xs[2] + widths[2] + MARGIN, MARGIN + legend_w + MARGIN)
    height = legend_top + 78

    denied = sum(not e.allowed for e in graph.edges)
    counts = (f"{_count(len(graph.services), 'service')}, {_count(len(graph.topics), 'topic')},"
              f" {_count(len(graph.edges), 'edge')} ({len(graph.edges) - denied} allowed,"
              f" {denied} denied)")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}"'
        f' viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label={quoteattr(title)}'
        f' font-family={quoteattr(FONT)} font-size="{FONT_SIZE}">',
        f"<title>{escape(title)}</title>",
        "<defs>",
        *(f'<marker id="arrow-{state}" viewBox="0 0 10 10" refX="10" refY="5"'
          f' markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
          f'<path d="M0,0 L10,5 L0,10 Z" fill="{colour}"/></marker>'
          for state, colour in (("allowed", ALLOWED_COLOUR), ("denied", DENIED_COLOUR))),
        "</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="30" font-size="17" font-weight="bold"'
        f' fill="{TEXT_COLOUR}">{escape(title)}</text>',
        f'<text x="{MARGIN}" y="52" font-size="12"'
        f' fill="{MUTED_COLOUR}">{escape(counts)}</text>',
        *head,
        '<g class="edges">', *parts, "</g>",
        '<g class="nodes">', *nodes, "</g>",
        '<g class="labels">', *labels, "</g>",
        '<g class="legend">', *legend, "</g>",
        "</svg>",
    ]
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _label(text: str, x: float, y: float, colour: str) -> str:
    w = _text_w(text, 11) + 8
    return (f'<rect x="{_n(x - w / 2)}" y="{_n(y - 8)}" width="{_n(w)}" height="16" rx="3"'
            f' fill="#ffffff" fill-opacity="0.9"/>'
            f'<text x="{_n(x)}" y="{_n(y + 4)}" text-anchor="middle" font-size="11"'
            f' fill="{colour}">{escape(text)}</text>')


def _node(box: _Box) -> str:
    x, y, w, h = box.x, box.y, box.w, float(NODE_H)
    if box.kind == "service":
        shape = (f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="12"'
                 f' fill="{SERVICE_FILL}" stroke="{SERVICE_STROKE}" stroke-width="1.5"/>')
        text_y = y + h / 2
    else:
        rx, ry = w / 2, CYL_RY
        shape = (f'<path d="M{_n(x)},{_n(y + ry)} V{_n(y + h - ry)} A{_n(rx)},{_n(ry)} 0 0 0'
                 f' {_n(x + w)},{_n(y + h - ry)} V{_n(y + ry)} Z" fill="{TOPIC_FILL}"'
                 f' stroke="{TOPIC_STROKE}" stroke-width="1.5"/>'
                 f'<ellipse cx="{_n(x + rx)}" cy="{_n(y + ry)}" rx="{_n(rx)}" ry="{_n(ry)}"'
                 f' fill="{TOPIC_FILL}" stroke="{TOPIC_STROKE}" stroke-width="1.5"/>')
        text_y = y + ry + h / 2
    return (f'<g class="node {box.kind}"><title>{box.kind} {escape(box.name)}</title>{shape}'
            f'<text x="{_n(x + w / 2)}" y="{_n(text_y + FONT_SIZE * 0.36)}" text-anchor="middle"'
            f' fill="{TEXT_COLOUR}">{escape(box.name)}</text></g>')


def _legend(x: float, y: float) -> tuple[list[str], float]:
    """The legend's elements at (x, y), and its width."""
    out: list[str] = []
    cursor = x
    for state, colour, dash, text in (
        ("allowed", ALLOWED_COLOUR, "", "allowed"),
        ("denied", DENIED_COLOUR, ' stroke-dasharray="7 4"', "denied (referenced, not allowed)"),
    ):
        out.append(f'<path class="legend-arrow" d="M{_n(cursor)},{_n(y)} H{_n(cursor + 40)}"'
                   f' fill="none" stroke="{colour}" stroke-width="1.6"{dash}'
                   f' marker-end="url(#arrow-{state})"/>')
        out.append(f'<text x="{_n(cursor + 48)}" y="{_n(y + 4)}" font-size="12"'
                   f' fill="{TEXT_COLOUR}">{escape(text)}</text>')
        cursor += 48 + _text_w(text, 12) + 28
    out.append(_node(_Box("service", "service", cursor, y - NODE_H / 2, 84)).replace(
        '<g class="node service">', '<g class="legend-node">'))
    cursor += 84 + 16
    out.append(_node(_Box("topic", "topic", cursor, y - NODE_H / 2 - 2, 84)).replace(
        '<g class="node topic">', '<g class="legend-node">'))
    cursor += 84
    out.extend(f'<text x="{_n(x)}" y="{_n(y + 38 + 15 * k)}" font-size="11"'
               f' fill="{MUTED_COLOUR}">{escape(line)}</text>'
               for k, line in enumerate(LEGEND_NOTE))
    return out, max(cursor - x, *(_text_w(line, 11) for line in LEGEND_NOTE))
