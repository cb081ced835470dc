"""The deployed gateway's environment, resolved for running its handler in this process
(tests, benchmarks, debugging): the template's variables with every ``{"Ref": id}`` replaced
by the deployed resource's physical id, and the bundled policy pointed at the build folder."""

from __future__ import annotations

from typing import Any

from infra.deploy import aws as deploy
from infra.deploy import pipeline
from infra.errors import InfraError
from infra.settings import Settings
from infra.stack import function_env
from infra.stack.deploy_settings import DeploySettings
from infra.stack.functions import POLICY_BUNDLE
from infra.stack.kafka_access import client_environment
from infra.stack.model import merge
from infra.stack.registry import part_builders


def physical_ids(settings: Settings) -> dict[str, str]:
    cfn = deploy.client(settings, "cloudformation")
    with deploy.aws_errors(settings, "describe stack resources"):
        resources = cfn.describe_stack_resources(StackName=settings.stack_name)
    return {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in resources["StackResources"]}


def _resolved(value: Any, ids: dict[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in ids:
        return ids[value["Ref"]]
    raise InfraError(f"gateway variable {value!r} cannot be resolved locally",
                     "deploy the stack first (meshgate deploy)")


def resolved_gateway_environment(settings: Settings) -> dict[str, str]:
    mesh = pipeline.mesh_config(settings, lambda _: None)
    env: dict[str, Any] = dict(function_env.gateway_environment(settings, mesh))
    extra = merge([builder({}, settings, mesh) for builder in part_builders()])
    ids = physical_ids(settings)
    env.update({name: _resolved(value, ids) for name, value in extra.gateway_env.items()})
    # how the deployed gateway reaches Kafka (on the emulator: SASL_SSL as user gateway)
    env.update(client_environment(DeploySettings.resolve(), settings, "gateway"))
    env["MESH_POLICY_FILE"] = str(pipeline.bundle_policy(settings))
    env.update(AWS_ENDPOINT_URL=str(settings.endpoint_url), AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=settings.region)
    assert POLICY_BUNDLE in env["MESH_POLICY_FILE"]
    return env
