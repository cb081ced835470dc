"""`meshgate policy check`: every mistake is reported with its file, its line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.policy import check_files

BASE = """\
services:
  gateway: {edge: true}
  orders:
    operations: [orders.create, orders.get]
    subsets: ["", canary]
topics:
  orders.requests: {partitions: 6}
  orders.canary.requests: {partitions: 2}
  mesh.replies: {partitions: 16}
access:
  gateway:
    call: [orders.*]
    consume: [mesh.replies]
  orders:
    produce: [mesh.replies]
routes:
  - method: POST
    path: /v1/orders
    operation: orders.create
    auth: none
traffic:
  orders.create:
    split:
      - {subset: "", weight: 90}
      - {subset: canary, weight: 10}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # file names in messages are relative to the working folder


def problems(tmp_path: Path, **files: str) -> list[str]:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return [str(p) for p in check_files([tmp_path]).problems]


def line(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``text`` containing ``needle``."""
    hits = [i for i, row in enumerate(text.splitlines(), 1) if needle in row]
    assert len(hits) >= nth, f"{needle!r} not in the fixture"
    return hits[nth - 1]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def one(tmp_path: Path, text: str) -> str:
    found = problems(tmp_path, mesh=text)
    assert len(found) == 1, found
    return found[0]


def test_the_base_fixture_is_clean(tmp_path: Path) -> None:
    assert problems(tmp_path, mesh=BASE) == []


# --- YAML ------------------------------------------------------------------------------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    text = edit("    auth: none", "    auth: [none")
    found = one(tmp_path, text)
    assert found.startswith(f"mesh.yaml:{line(text, 'traffic:')}: YAML syntax error")
    assert "fix the YAML" in found


def test_duplicate_key_in_one_file(tmp_path: Path) -> None:
    text = edit("  mesh.replies: {partitions: 16}",
                "  mesh.replies: {partitions: 16}\n  orders.requests: {partitions: 3}")
    assert one(tmp_path, text) == (
        f'mesh.yaml:{line(text, "orders.requests:", 2)}: topics["orders.requests"] is defined '
        f"twice in this file (first at line {line(text, 'orders.requests:')}); keep one"
    )


def test_lines_through_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = edit("  mesh.replies: {partitions: 16}",
                "  mesh.replies: &big {partitions: 16}\n  other:\n    <<: *big\n"
                "    partitons: 2")
    found = one(tmp_path, text)
    assert found.startswith(f"mesh.yaml:{line(text, 'partitons')}: topics.other has an unknown")


def test_an_empty_file_is_an_empty_policy(tmp_path: Path) -> None:
    assert problems(tmp_path, mesh=BASE, empty="# nothing yet\n") == []


# --- schema ----------------------------------------------------------------------------


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = edit("orders.canary.requests: {partitions: 2}", "orders.canary.requests: {partitons: 2}")
    found = problems(tmp_path, mesh=text)
    n = line(text, "partitons")
    assert sorted(found) == [
        f'mesh.yaml:{n}: topics["orders.canary.requests"] has an unknown key \'partitons\'; '
        "did you mean partitions? (allowed here: partitions, replication, retention_ms, "
        "cleanup_policy, compression, config)",
        f"mesh.yaml:{n}: topics[\"orders.canary.requests\"] needs 'partitions'; "
        "add partitions: ...",
    ]


def test_access_written_under_a_service(tmp_path: Path) -> None:
    text = edit("  gateway: {edge: true}", "  gateway:\n    produces: [orders.requests]")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'produces')}: services.gateway has an unknown key 'produces'; "
        "access has its own section: move it to access.gateway.produce "
        "(allowed here: operations, subsets, keys, edge, side_effect_free, message_auth)"
    )


def test_missing_field(tmp_path: Path) -> None:
    text = edit("    auth: none\n", "")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, '- method: POST')}: routes[0] needs 'auth'; add auth: ..."
    )


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    text = edit("{partitions: 6}", '{partitions: "6"}')
    n = line(text, 'partitions: "6"')
    assert one(tmp_path, text) == (
        f'mesh.yaml:{n}: topics["orders.requests"].partitions is the text \'6\'; write a whole '
        "number, without quotes"
    )


def test_bad_name_as_a_key(tmp_path: Path) -> None:
    text = edit("  gateway: {edge: true}", "  Gateway_1: {}")
    found = problems(tmp_path, mesh=text)
    assert found[0] == (
        f"mesh.yaml:{line(text, 'Gateway_1')}: the key 'Gateway_1' under services is not "
        "valid; write a service name: lowercase letters, digits and '-', starting with a letter"
    )


def test_literal_choices(tmp_path: Path) -> None:
    text = edit("auth: none", "auth: basic")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'auth: basic')}: routes[0].auth is 'basic'; "
        "use one of 'none', 'jwt' or 'api_key'"
    )


def test_route_timeout_inside_api_gateway_limit(tmp_path: Path) -> None:
    text = edit("    auth: none", "    auth: none\n    timeout_ms: 30000")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, '- method: POST')}: routes[0]: timeout_ms 30000 is over 29000, "
        "when API Gateway ends the call; lower it or make the route async"
    )


def test_bad_route_paths(tmp_path: Path) -> None:
    text = edit("path: /v1/orders", "path: /v1/orders/")
    found = one(tmp_path, text)
    assert found.startswith(f"mesh.yaml:{line(text, 'path:')}: routes[0].path '/v1/orders/' is "
                            "not valid; write a path such as /v1/orders/{id}")
    text = edit("path: /v1/orders", "path: /v1/{id}/x/{id}")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'path:')}: routes[0].path: path parameter 'id' appears twice; "
        "rename one"
    )
    text = edit("path: /v1/orders", "path: /v1/{rest+}/x")
    assert "greedy parameter {rest+} must be the last segment" in one(tmp_path, text)


def test_topic_config_values_are_text(tmp_path: Path) -> None:
    text = edit("{partitions: 16}", "{partitions: 16, config: {max.message.bytes: 1048576}}")
    assert one(tmp_path, text) == (
        f'mesh.yaml:{line(text, "max.message")}: topics["mesh.replies"].config["max.message.bytes"]'
        ' is the number 1048576; quote it: "1048576" (Kafka configs are text)'
    )


def test_typed_configs_have_one_spelling(tmp_path: Path) -> None:
    text = edit("{partitions: 16}", '{partitions: 16, config: {retention.ms: "1"}}')
    assert one(tmp_path, text) == (
        f'mesh.yaml:{line(text, "retention.ms")}: topics["mesh.replies"].config: config sets '
        "retention.ms, which has its own field; write retention_ms instead of config.retention.ms"
    )


def test_split_weights_must_sum_to_100(tmp_path: Path) -> None:
    text = edit("weight: 10", "weight: 5")
    assert one(tmp_path, text) == (
        f'mesh.yaml:{line(text, "split:")}: traffic["orders.create"].split: split weights must '
        "sum to 100, they sum to 95; change the weights so that they sum to 100"
    )


def test_hmac_secrets_never_in_policies(tmp_path: Path) -> None:
    text = edit("  gateway: {edge: true}", "  gateway:\n    edge: true\n    keys:\n"
                "      - key_id: k1\n"
                "        algorithm: hmac-sha256\n        public_key: abc")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, '- key_id: k1')}: services.gateway.keys[0]: key k1 is an HMAC "
        "secret, which must never be in a policy; remove public_key and keep only key_id"
    )
    text = edit("  gateway: {edge: true}",
                "  gateway:\n    edge: true\n    keys:\n      - {key_id: k1, public_key: abc}")
    assert "is not a 32-byte Ed25519 key" in one(tmp_path, text)


def test_every_schema_error_is_listed_and_what_names_a_broken_entry_waits(
        tmp_path: Path) -> None:
    text = edit("auth: none", "auth: basic", edit("{partitions: 6}", "{partitions: 0}"))
    (tmp_path / "mesh.yaml").write_text(text)
    report = check_files([tmp_path])
    assert [p.line for p in report.problems] == [line(text, "partitions: 0"),
                                                 line(text, "auth: basic")]
    assert report.checked_references  # over the entries that parsed
    assert report.held_back == 1  # "orders.requests is not declared": its entry is broken
    assert report.policy is None


# --- references ------------------------------------------------------------------------


def test_route_to_an_operation_nobody_serves(tmp_path: Path) -> None:
    text = edit("operation: orders.create", "operation: orders.cancel")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'orders.cancel')}: route POST /v1/orders targets operation "
        "orders.cancel that no service owns; add it to services.orders.operations or fix the route"
    )


def test_route_to_an_unknown_service_operation_suggests(tmp_path: Path) -> None:
    text = edit("operation: orders.create", "operation: order.create")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'order.create')}: route POST /v1/orders targets operation "
        "order.create that no service owns; declare the service that serves it or fix the route "
        "(did you mean orders.create?)"
    )


def test_a_service_calling_an_operation_it_may_not(tmp_path: Path) -> None:
    text = edit("call: [orders.*]", "call: [orders.get]")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'operation: orders.create')}: route POST /v1/orders makes "
        "service gateway call orders.create, which it may not; add orders.create (or orders.*) "
        "to access.gateway.call or fix the route"
    )


def test_route_served_by_an_unknown_service(tmp_path: Path) -> None:
    text = edit("    auth: none", "    auth: none\n    caller: edge")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'caller: edge')}: route POST /v1/orders is served by service "
        "edge, which is not declared; declare services.edge or set caller to the edge service"
    )


def test_a_route_that_authenticates_is_served_by_an_edge(tmp_path: Path) -> None:
    # The caller's principal travels only from an edge (bus.security.principals): a route that
    # authenticates, served by a service that is not one, would be refused by every receiver.
    text = edit("auth: none", "auth: api_key", edit("  gateway: {edge: true}", "  gateway: {}"))
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, '- method: POST')}: route POST /v1/orders authenticates its "
        "callers (api_key) but is served by service gateway, which is not an edge: every "
        "receiver would refuse the caller's principal it sends; mark it an edge "
        "(services.gateway.edge: true) or set caller to one"
    )
    assert problems(tmp_path, mesh=edit("auth: none", "auth: api_key")) == []
    # Without credentials there is no principal: any service may serve such a route.
    assert problems(tmp_path, mesh=edit("  gateway: {edge: true}", "  gateway: {}")) == []


def test_edge_is_a_boolean(tmp_path: Path) -> None:
    text = edit("  gateway: {edge: true}", "  gateway: {edge: 'yes'}")
    assert "services.gateway.edge" in one(tmp_path, text)


def test_access_for_an_unknown_service(tmp_path: Path) -> None:
    text = edit("  orders:\n    produce", "  ordres:\n    produce")
    found = problems(tmp_path, mesh=text)
    assert found[1] == (
        f"mesh.yaml:{line(text, 'ordres:')}: access names service ordres, which is not "
        "declared; declare services.ordres or fix the name (did you mean orders?)"
    )
    assert found[0].startswith(f"mesh.yaml:{line(text, 'operations: [')}: service orders serves "
                               "operations but may not produce to mesh.replies")


def test_unknown_topics(tmp_path: Path) -> None:
    text = edit("consume: [mesh.replies]", "consume: [mesh.replies, mesh.reply, audit.*]")
    n = line(text, "consume:")
    assert problems(tmp_path, mesh=text) == [
        f"mesh.yaml:{n}: access.gateway.consume: topic mesh.reply is not declared; declare it "
        "under topics or fix the name (did you mean mesh.replies?)",
        f"mesh.yaml:{n}: access.gateway.consume: pattern audit.* matches no declared topic; "
        "declare it under topics or fix the name",
    ]


def test_calls_to_unknown_operations(tmp_path: Path) -> None:
    text = edit("call: [orders.*]", "call: [orders.*, orders.cancel, billing.*]")
    n = line(text, "call:")
    assert problems(tmp_path, mesh=text) == [
        f"mesh.yaml:{n}: access.gateway.call: operation orders.cancel is owned by no service; "
        "add it to services.orders.operations or fix the name",
        f"mesh.yaml:{n}: access.gateway.call: pattern billing.* matches no operation any "
        "service owns; fix the pattern or add the operations to the services that serve them",
    ]


def test_callers_and_servers_need_the_reply_topic(tmp_path: Path) -> None:
    text = edit("    consume: [mesh.replies]\n", "")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'call:')}: service gateway may call operations but may not "
        "consume mesh.replies, where their answers arrive; add mesh.replies to "
        "access.gateway.consume"
    )


def test_request_topic_of_a_subset_must_be_declared(tmp_path: Path) -> None:
    text = edit("  orders.canary.requests: {partitions: 2}\n", "")
    assert one(tmp_path, text) == (
        f'mesh.yaml:{line(text, "subsets:")}: service orders serves subset canary on topic '
        "orders.canary.requests, which is not declared; add orders.canary.requests under topics "
        "or remove the subset"
    )


BILLING = """\
  billing:
    operations: [{ops}]
topics:
  billing.requests: {{partitions: 1}}
"""


def with_billing(ops: str) -> str:
    text = edit("topics:\n", BILLING.format(ops=ops))
    return edit("access:\n", "access:\n  billing:\n    produce: [mesh.replies]\n", text)


def test_operations_are_named_after_their_service(tmp_path: Path) -> None:
    text = with_billing("billing.charge, orders.refund")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'orders.refund')}: service billing owns operation orders.refund, "
        "but the mesh sends orders.* calls to the request topics of service orders; rename it "
        "billing.refund or move it to services.orders.operations"
    )


def test_an_operation_has_one_owner(tmp_path: Path) -> None:
    text = with_billing("orders.get")
    found = problems(tmp_path, mesh=text)
    n = line(text, "[orders.get]")
    assert len(found) == 2
    assert found[1] == (
        f"mesh.yaml:{n}: operation orders.get is owned by both orders and billing "
        f"(mesh.yaml:{line(text, '  orders:')}); keep it in one service"
    )


def test_key_ids_belong_to_one_service(tmp_path: Path) -> None:
    text = edit("  gateway: {edge: true}",
                "  gateway:\n    edge: true\n    keys: [{key_id: k1}]")
    text = edit("    subsets:", "    keys: [{key_id: k1}]\n    subsets:", text)
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'key_id: k1', 2)}: key id k1 belongs to both services gateway "
        f"and orders (mesh.yaml:{line(text, 'gateway:')}); each key belongs to one service: "
        "give one of them a new key id"
    )


def test_topics_colliding_in_kafka(tmp_path: Path) -> None:
    text = edit("  mesh.replies: {partitions: 16}",
                "  mesh.replies: {partitions: 16}\n  mesh_replies: {partitions: 1}")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'mesh_replies')}: topics mesh.replies and mesh_replies collide: "
        "Kafka treats '.' and '_' alike in metric names and refuses the second "
        f"(mesh.yaml:{line(text, 'mesh.replies: {')}); rename one of them"
    )


# --- routes ----------------------------------------------------------------------------

ROUTE = "  - method: {method}\n    path: {path}\n    operation: orders.get\n    auth: api_key\n"


def with_route(method: str, path: str, text: str = BASE) -> str:
    return edit("traffic:", ROUTE.format(method=method, path=path) + "traffic:", text)


def test_overlapping_routes(tmp_path: Path) -> None:
    text = with_route("GET", "/v1/orders/new", with_route("GET", "/v1/orders/{id}"))
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'path: /v1/orders/new')}: route GET /v1/orders/new overlaps "
        f"route GET /v1/orders/{{id}} (mesh.yaml:{line(text, '- method: GET')}): both match "
        "GET /v1/orders/new; make the paths (or methods) distinct, or remove one of the routes"
    )


@pytest.mark.parametrize(
    ("first", "second", "example"),
    [
        (("ANY", "/v1/orders/{id}"), ("GET", "/v1/{kind}/7"), "GET /v1/orders/7"),
        (("GET", "/v1/{proxy+}"), ("GET", "/v1/orders/{id}/lines"), "GET /v1/orders/x/lines"),
        (("POST", "/v1/{a}/{b}"), ("POST", "/v1/{c}/{d}"), "POST /v1/x/x"),
    ],
)
def test_more_overlaps(tmp_path: Path, first: tuple[str, str], second: tuple[str, str],
                       example: str) -> None:
    text = with_route(*second, with_route(*first))
    assert f": both match {example};" in one(tmp_path, text)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("GET", "/v1/orders/{id}"), ("POST", "/v1/orders/{id}")),
        (("GET", "/v1/orders/{id}"), ("GET", "/v1/orders/{id}/lines")),
        (("GET", "/v1/orders/new"), ("GET", "/v1/orders/old")),
        (("GET", "/v1/{proxy+}"), ("GET", "/v1")),
    ],
)
def test_routes_that_do_not_overlap(tmp_path: Path, first: tuple[str, str],
                                    second: tuple[str, str]) -> None:
    assert problems(tmp_path, mesh=with_route(*second, with_route(*first))) == []


def test_a_route_defined_in_two_files(tmp_path: Path) -> None:
    other = "routes:\n" + ROUTE.format(method="POST", path="/v1/orders").replace(
        "orders.get", "orders.create")
    assert problems(tmp_path, mesh=BASE, more=other) == [
        f"more.yaml:2: route POST /v1/orders is defined twice (mesh.yaml:"
        f"{line(BASE, '- method: POST')}); remove one of them"
    ]


# --- traffic rules ---------------------------------------------------------------------


def test_traffic_rules_for_an_unknown_operation(tmp_path: Path) -> None:
    text = BASE + "  orders.cancel:\n    timeout_ms: 100\n"
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'orders.cancel:')}: traffic rules for operation orders.cancel, "
        "which no service owns; add it to services.orders.operations or fix the name"
    )


def test_traffic_rules_name_subsets_the_service_runs(tmp_path: Path) -> None:
    text = edit("subset: canary,", "subset: canry,") + (
        "  orders.get:\n    match:\n      - {header: x-tenant, equals: beta, subset: beta}\n"
        "    mirror: {subset: shadow, percent: 5}\n"
    )
    assert problems(tmp_path, mesh=text) == [
        f"mesh.yaml:{line(text, 'canry')}: traffic rules for orders.create send to subset canry, "
        "which service orders does not run; add canry to services.orders.subsets or fix the subset"
        " (did you mean canary?)",
        f"mesh.yaml:{line(text, 'x-tenant')}: traffic rules for orders.get send to subset beta, "
        "which service orders does not run; add beta to services.orders.subsets or fix the subset",
        f"mesh.yaml:{line(text, 'shadow')}: traffic rules for orders.get send to subset shadow, "
        "which service orders does not run; add shadow to services.orders.subsets or fix the "
        "subset",
    ]


def test_main_subset_not_run(tmp_path: Path) -> None:
    text = edit('subsets: ["", canary]', "subsets: [canary]")
    text = edit("  orders.requests: {partitions: 6}\n", "", text)
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'weight: 90')}: traffic rules for orders.create send to subset "
        '"", which service orders does not run; add "" to services.orders.subsets or fix the '
        "subset"
    )


def test_sticky_header_needs_a_split(tmp_path: Path) -> None:
    text = BASE + "  orders.get:\n    sticky_header: x-user\n"
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'sticky_header')}: traffic rules for orders.get set "
        "sticky_header without a split; add a split or remove sticky_header"
    )


# --- request and response schemas -------------------------------------------------------


def test_schema_refs_must_exist(tmp_path: Path) -> None:
    text = edit("    auth: none", "    auth: none\n    request_schema: {$ref: schemas/create.json}"
                "\n    response_schema: {type: objekt}")
    assert problems(tmp_path, mesh=text) == [
        f"mesh.yaml:{line(text, 'request_schema')}: route POST /v1/orders: request_schema refers "
        "to schemas/create.json, which does not exist (looked for schemas/create.json); fix the "
        "path (relative to the policy file) or write the schema inline",
        f"mesh.yaml:{line(text, 'response_schema')}: route POST /v1/orders: response_schema has "
        "type 'objekt', which is not a JSON Schema type; use one of array, boolean, integer, "
        "null, number, object, string",
    ]
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "create.json").write_text('{"type": "object"}')
    text = edit("{type: objekt}", "{type: object, properties: {id: {type: string}}}", text)
    assert problems(tmp_path, mesh=text) == []
    (tmp_path / "schemas" / "create.json").write_text("{not json")
    assert "which is not readable JSON or YAML" in one(tmp_path, text)


def test_one_document_per_file(tmp_path: Path) -> None:
    text = BASE + "---\nservices: {}\n"
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, '---')}: a policy file holds one YAML document, this one has "
        "more; remove the '---' line or put each document in its own file"
    )


def test_unknown_section(tmp_path: Path) -> None:
    text = BASE.replace("routes:", "route:")
    assert one(tmp_path, text) == (
        f"mesh.yaml:{line(text, 'route:')}: the top level has an unknown key 'route'; did you "
        "mean routes? (allowed here: services, topics, access, routes, edge, traffic, "
        "operators)"
    )
