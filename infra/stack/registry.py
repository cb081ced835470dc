"""Every feature part of the stack, in a fixed order: the registry ``infra.stack.template``
merges. Each part (``infra/stack/parts/*.py``) returns a ``StackPart`` (``infra.stack.model``)
with its resources, outputs, role statements and gateway environment; adding a feature adds a
part here and never edits the core template.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.deploy_settings import DeploySettings
from infra.stack.kafka_access import client_environment
from infra.stack.model import MeshConfig, PartBuilder, StackPart, merge
from infra.stack.parts import (
    async_routes,
    auth,
    authorized_edge,
    bench_echo,
    cluster,
    ratelimit,
    services,
)


def part_builders(deploy: DeploySettings | None = None) -> tuple[PartBuilder, ...]:
    """Every feature's part, in a fixed order (so the rendered template is stable); the
    parts that depend on the AWS deploy settings get ``deploy`` (default: resolved from
    ``MESHGATE_DEPLOY_*``)."""
    deploy = deploy or DeploySettings.resolve()
    return (*_feature_parts(deploy), partial(authorized_edge_part, deploy=deploy))


def _feature_parts(deploy: DeploySettings) -> tuple[PartBuilder, ...]:
    """Every part but the authorized edge (which copies the gateway environment of these)."""
    return (auth.part, ratelimit.part, async_routes.part,
            partial(services.part, deploy=deploy), partial(cluster.part, deploy=deploy),
            bench_echo.part)


def other_parts_gateway_env(settings: Settings, mesh: MeshConfig) -> dict[str, Any]:
    """The gateway environment every other part adds (what ``GatewayFunction`` gets on top of
    ``infra.stack.function_env.gateway_environment``)."""
    return dict(merge([builder({}, settings, mesh)
                       for builder in _feature_parts(DeploySettings())]).gateway_env)


def authorized_edge_part(artifacts: Mapping[str, Artifact], settings: Settings,
                         mesh: MeshConfig, *, deploy: DeploySettings) -> StackPart:
    """The authorized edge runs the same gateway, so it gets every other part's environment
    (passed in here: a part never imports the registry) and the same Kafka client."""
    return authorized_edge.part(
        artifacts, settings, mesh,
        other_parts_env={**other_parts_gateway_env(settings, mesh),
                         **client_environment(deploy, settings, "gateway")})
