"""The stack part of rate limiting: the token-bucket table shared by every gateway instance
(``functions.gateway.ratelimit``), the role's access to it, and its name for the gateway."""

from __future__ import annotations

from collections.abc import Mapping

from functions.gateway.ratelimit.quota import quota_access
from functions.gateway.ratelimit.table import rate_limit_access, rate_limit_table
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.model import MeshConfig, StackPart

TABLE = "RateLimitTable"
ENV_TABLE = "MESH_RATE_LIMIT_TABLE"


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    return StackPart(
        resources={TABLE: rate_limit_table(f"{settings.stack_name}-ratelimit")},
        outputs={"RateLimitTableName": {"Value": {"Ref": TABLE}}},
        # quotas count in the same table with one conditional UpdateItem
        role_statements=[rate_limit_access(TABLE), quota_access(TABLE)],
        gateway_env={ENV_TABLE: {"Ref": TABLE}},
    )
