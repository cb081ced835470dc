"""The stack part of async routes: the operations table (``functions.shared.operations_store``)
where the edge creates each operation and the recorder keeps its result, the role's access to
it, and its name for the gateway (``MESH_OPERATIONS_TABLE``) and for local workers (output)."""

from __future__ import annotations

from collections.abc import Mapping

from functions.shared.operations_store import ENV_TABLE
from functions.shared.operations_table import operations_access, operations_table
from infra.deploy.package import Artifact
from infra.settings import Settings
from infra.stack.model import MeshConfig, StackPart

TABLE = "OperationsTable"
OUTPUT = "OperationsTableName"


def table_name(settings: Settings) -> str:
    return f"{settings.stack_name}-operations"


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    return StackPart(
        resources={TABLE: operations_table(table_name(settings))},
        outputs={OUTPUT: {"Value": {"Ref": TABLE}}},
        role_statements=[operations_access(TABLE)],
        gateway_env={ENV_TABLE: {"Ref": TABLE}},
    )
