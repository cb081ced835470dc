"""The events stack part: the orders-events function, its role statements, and the Kafka
event source mapping only on real AWS."""

from __future__ import annotations

import json
from pathlib import Path

from bus.config import BusSettings
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.functions import FUNCTIONS, GATEWAY, ORDERS_EVENTS
from infra.stack.model import MeshConfig
from infra.stack.parts.events import FUNCTION_ID, MAPPING_ID, ROLE_ID, part
from infra.stack.template import stack_template

MESH = MeshConfig(keyring={"keys": []}, access={"produce": {"orders": ["mesh.replies"]}})
ARTIFACTS = {spec.name: Artifact(spec, Path(f"/tmp/{spec.name}.zip"), "ab" * 32)
             for spec in FUNCTIONS}


def test_the_function_is_built_and_gets_the_orders_environment() -> None:
    assert ORDERS_EVENTS in FUNCTIONS
    assert ORDERS_EVENTS.handler == "functions.orders.lambda_handler.handler"
    local = Settings(stack_name="teststack")
    built = part(ARTIFACTS, local, MESH)
    function = built.resources[FUNCTION_ID]["Properties"]
    env = function["Environment"]["Variables"]
    assert env["MESH_IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    bus = BusSettings.resolve(env={k: v for k, v in env.items() if isinstance(v, str)})
    assert bus.service_name == "orders"
    assert bus.signing_key_secret == "teststack/orders/signing-key"
    assert json.loads(bus.access_json or "") == MESH.access
    assert MAPPING_ID not in built.resources  # the emulator has no Kafka mapping
    assert built.outputs == {"OrdersEventsFunctionName": {"Value": {"Ref": FUNCTION_ID}}}
    # its own role: the edge's role never gets the orders service's key
    assert list(built.role_statements) == []
    assert function["Role"] == {"Fn::GetAtt": [ROLE_ID, "Arn"]}
    [policy] = built.resources[ROLE_ID]["Properties"]["Policies"]
    secret, table, keyring = policy["PolicyDocument"]["Statement"]
    assert str(secret["Resource"]["Fn::Sub"]).endswith(":secret:teststack/orders/signing-key-*")
    assert table["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert keyring["Action"] == "ssm:GetParameter"  # the live keyring, reloaded (keys rotate)
    assert str(keyring["Resource"]["Fn::Sub"]).endswith(":parameter/teststack/keyring")
    assert env["MESH_KEYRING_PARAMETER"] == "/teststack/keyring"


def test_on_aws_a_self_managed_kafka_mapping_feeds_it_with_partial_batch_responses() -> None:
    aws = Settings(endpoint_url=None, kafka_bootstrap="b1:9092,b2:9092")
    mapping = part(ARTIFACTS, aws, MESH).resources[MAPPING_ID]["Properties"]
    assert mapping["FunctionName"] == {"Ref": FUNCTION_ID}
    assert mapping["Topics"] == ["orders.requests"]
    assert mapping["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"] == [
        "b1:9092", "b2:9092"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_whole_template_holds_the_function_once() -> None:
    rest = {name: a for name, a in ARTIFACTS.items() if name != GATEWAY.name}
    template = stack_template(ARTIFACTS[GATEWAY.name], Settings(), MESH, rest)
    assert template["Resources"][FUNCTION_ID]["Type"] == "AWS::Lambda::Function"
    assert "OrdersEventsFunctionName" in template["Outputs"]


def test_without_its_zip_the_part_is_empty() -> None:
    assert part({}, Settings(), MESH).resources == {}
