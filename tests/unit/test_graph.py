"""infra.policy.graph: the service and topic graph from the policies, as Mermaid text and SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from bus.policy.model import Policy
from infra.policy.graph import (
    Edge,
    Graph,
    graph_from_files,
    graph_from_policy,
    render,
    to_mermaid,
    to_svg,
)
from infra.settings import ROOT

SVG = "{http://www.w3.org/2000/svg}"


def _small() -> Graph:
    return Graph(
        services=["gateway", "orders"],
        topics=["orders.requests", "mesh.replies"],
        edges=[
            Edge("gateway", "orders.requests", "produces"),
            Edge("orders.requests", "orders", "consumes"),
            Edge("orders", "mesh.replies", "produces"),
            Edge("gateway", "orders", "calls"),
            Edge("gateway", "mesh.replies", "produces", allowed=False),
        ],
    )


MERMAID = """\
flowchart LR
    svc_gateway("gateway")
    svc_orders("orders")
    topic_orders_requests[("orders.requests")]
    topic_mesh_replies[("mesh.replies")]
    svc_gateway --> topic_orders_requests
    topic_orders_requests --> svc_orders
    svc_orders --> topic_mesh_replies
    svc_gateway -->|calls| svc_orders
    svc_gateway -.->|denied| topic_mesh_replies
    classDef service fill:#e8f0fe,stroke:#1a73e8
    classDef topic fill:#fef7e0,stroke:#b06000
    class svc_gateway,svc_orders service
    class topic_orders_requests,topic_mesh_replies topic
    linkStyle 4 stroke:#d93025,color:#d93025
"""


def _svg(graph: Graph) -> ET.Element:
    return ET.fromstring(to_svg(graph))


def _texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def _edge_paths(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}path") if el.get("class", "").split()[:1] == ["edge"]]


# ---- Mermaid ---------------------------------------------------------------------------------


def test_mermaid_of_a_small_graph() -> None:
    assert to_mermaid(_small()) == MERMAID
    assert render(_small(), "mermaid") == MERMAID


def test_mermaid_ids_stay_distinct_and_labels_are_quoted() -> None:
    graph = Graph(services=["a.b", 'we"ird'], topics=["a.b", "a_b"],
                  edges=[Edge("a.b", "a.b", "produces"), Edge("a_b", 'we"ird', "consumes")])
    text = to_mermaid(graph)
    assert 'svc_a_b("a.b")' in text
    assert 'svc_we_ird("we#quot;ird")' in text
    assert 'topic_a_b[("a.b")]' in text
    assert 'topic_a_b_2[("a_b")]' in text
    assert "svc_a_b --> topic_a_b\n" in text
    assert "topic_a_b_2 --> svc_we_ird\n" in text
    assert "linkStyle" not in text


# ---- SVG -------------------------------------------------------------------------------------


def test_svg_is_well_formed_with_every_label_and_one_arrow_per_edge() -> None:
    graph = _small()
    root = _svg(graph)
    assert root.tag == f"{SVG}svg"
    texts = _texts(root)
    for name in [*graph.services, *graph.topics]:
        assert name in texts
    paths = _edge_paths(root)
    assert len(paths) == len(graph.edges)
    assert all(p.get("marker-end", "").startswith("url(#arrow-") for p in paths)
    markers = {m.get("id") for m in root.iter(f"{SVG}marker")}
    assert {"arrow-allowed", "arrow-denied"} <= markers
    # Each edge says what it is, for a reader hovering over it.
    titles = ["".join(t.itertext()) for p in paths for t in p.iter(f"{SVG}title")]
    assert "gateway produces to orders.requests (allowed)" in titles
    assert "gateway produces to mesh.replies (denied)" in titles


def test_denied_edges_are_dashed_and_labelled() -> None:
    root = _svg(_small())
    paths = _edge_paths(root)
    denied = [p for p in paths if "denied" in p.get("class", "").split()]
    allowed = [p for p in paths if "allowed" in p.get("class", "").split()]
    assert len(denied) == 1
    assert len(allowed) == 4
    assert all(p.get("stroke-dasharray") for p in denied)
    assert all(p.get("marker-end") == "url(#arrow-denied)" for p in denied)
    assert not any(p.get("stroke-dasharray") for p in allowed)
    assert _texts(root).count("denied") == 1
    assert _texts(root).count("calls") == 1


def test_svg_is_deterministic() -> None:
    first = render(_small(), "svg")
    assert render(_small(), "svg") == first
    assert to_svg(_small()).encode() == first.encode()


def test_a_service_that_sends_and_receives_is_drawn_in_both_columns() -> None:
    texts = _texts(_svg(_small()))
    assert texts.count("orders") == 2  # sender (produces replies) and receiver (consumes)
    assert texts.count("gateway") == 1  # sends only


def test_names_are_escaped() -> None:
    name = "<svc & co>"
    graph = Graph(services=[name], topics=["t"], edges=[Edge(name, "t", "produces")])
    assert "<svc & co>" in _texts(_svg(graph))


def test_a_service_and_a_topic_may_share_a_name() -> None:
    graph = Graph(services=["orders"], topics=["orders"],
                  edges=[Edge("orders", "orders", "produces"),
                         Edge("orders", "orders", "consumes")])
    assert len(_edge_paths(_svg(graph))) == 2
    assert "svc_orders --> topic_orders\n    topic_orders --> svc_orders\n" in to_mermaid(graph)


def test_empty_graph_renders() -> None:
    empty = Graph(services=[], topics=[], edges=[])
    assert _edge_paths(_svg(empty)) == []
    assert to_mermaid(empty).startswith("flowchart LR\n")


def test_calls_run_in_lanes_below_the_topics() -> None:
    root = _svg(_small())
    call = next(p for p in _edge_paths(root) if "calls" in p.get("class", "").split())
    d = call.get("d", "")
    assert " L" in d  # the straight run of its lane
    lane_y = float(d.split(" L")[1].split(",")[1].split()[0])
    topics = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node topic"]
    assert len(topics) == 2
    for topic in topics:
        ellipse = topic.find(f"{SVG}ellipse")
        assert ellipse is not None
        top_y = float(ellipse.get("cy", "0")) - float(ellipse.get("ry", "0"))
        assert lane_y > top_y + 38  # below the whole cylinder


# ---- Errors ----------------------------------------------------------------------------------


def test_unknown_nodes_kinds_and_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="'nobody' is not one of the graph's services"):
        to_svg(Graph(services=[], topics=["t"], edges=[Edge("nobody", "t", "produces")]))
    with pytest.raises(ValueError, match="'t' is not one of the graph's topics"):
        to_mermaid(Graph(services=["a"], topics=[], edges=[Edge("a", "t", "produces")]))
    with pytest.raises(ValueError, match="unknown kind"):
        to_mermaid(Graph(services=["a"], topics=[], edges=[Edge("a", "a", "owns")]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown graph format"):
        render(_small(), "png")  # type: ignore[arg-type]


# ---- From today's policies/mesh.yaml ----------------------------------------------------------


def test_graph_from_a_policy() -> None:
    policy = Policy.from_json(json.dumps({
        "services": {"gateway": {}, "orders": {"operations": ["orders.create"]},
                     "billing": {"operations": ["billing.charge"]}},
        "topics": {"orders.requests": {"partitions": 1}, "billing.requests": {"partitions": 1},
                   "mesh.replies": {"partitions": 1}},
        "access": {"gateway": {"call": ["orders.*"], "consume": ["mesh.replies"]},
                   "orders": {"produce": ["mesh.replies"]},
                   "billing": {"produce": ["mesh.replies"]}},
        "routes": [
            {"method": "POST", "path": "/v1/orders", "operation": "orders.create",
             "auth": "none"},
            {"method": "POST", "path": "/v1/charges", "operation": "billing.charge",
             "auth": "none"},
        ],
    }))
    graph = graph_from_policy(policy)
    assert graph.services == ["gateway", "orders", "billing"]
    assert Edge("gateway", "orders.requests", "produces") in graph.edges
    assert Edge("mesh.replies", "gateway", "consumes") in graph.edges
    assert Edge("orders.requests", "orders", "consumes") in graph.edges
    assert Edge("gateway", "orders", "calls", allowed=True) in graph.edges
    # The gateway may not call billing.charge: the route's call is drawn denied.
    assert Edge("gateway", "billing", "calls", allowed=False) in graph.edges
    assert Edge("gateway", "billing.requests", "produces") not in graph.edges


def test_the_real_policies_render() -> None:
    graph = graph_from_files(ROOT / "policies")
    assert Edge("gateway", "orders.requests", "produces") in graph.edges
    assert Edge("orders.requests", "orders", "consumes") in graph.edges
    assert Edge("orders", "mesh.replies", "produces") in graph.edges
    assert Edge("gateway", "orders", "calls", allowed=True) in graph.edges

    mermaid = render(graph, "mermaid")
    assert mermaid.startswith("flowchart LR\n")
    assert 'svc_gateway("gateway")' in mermaid
    root = ET.fromstring(render(graph, "svg"))
    texts = _texts(root)
    assert all(name in texts for name in [*graph.services, *graph.topics])
    assert len(_edge_paths(root)) == len(graph.edges)
    assert render(graph_from_files(ROOT / "policies"), "svg") == render(graph, "svg")
