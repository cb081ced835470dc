"""What the template and its parts share: the mesh configuration handed to functions, and
a part (``StackPart``: resources, outputs, role statements and gateway environment), how parts
are built (``PartBuilder``) and merged.

Logical ids must be unique across parts; ``merge`` refuses a clash instead of letting one
part silently replace another's resource. This module imports no part and no template: the
parts import it, so the import graph stays a DAG (parts -> model; template -> registry -> parts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.deploy.package import Artifact
from infra.settings import Settings


@dataclass(frozen=True)
class MeshConfig:
    """Public mesh configuration handed to functions: trusted keys and the access map."""

    keyring: dict[str, Any]
    access: dict[str, Any]


@dataclass(frozen=True)
class StackPart:
    resources: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    role_statements: Sequence[Mapping[str, Any]] = ()  # added to the functions' role
    gateway_env: Mapping[str, Any] = field(default_factory=dict)  # may hold {"Ref": ...}


PartBuilder = Callable[[Mapping[str, Artifact], Settings, MeshConfig], StackPart]


def merge(parts: Sequence[StackPart]) -> StackPart:
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    statements: list[Mapping[str, Any]] = []
    env: dict[str, Any] = {}
    for part in parts:
        for target, new in ((resources, part.resources), (outputs, part.outputs),
                            (env, part.gateway_env)):
            clash = sorted(set(target) & set(new))
            if clash:
                raise ValueError(f"two stack parts define {', '.join(clash)}")
            target.update(new)
        statements.extend(part.role_statements)
    return StackPart(resources, outputs, statements, env)
