"""Features that add to the stack: each feature module (``infra/part_*.py``) returns a
``StackPart`` with its resources, outputs, role statements and gateway environment, and
``infra.template`` merges them. Adding a feature never edits the core template.

Logical ids must be unique across parts; ``merge`` refuses a clash instead of letting one
part silently replace another's resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.deploy.package import Artifact
from infra.settings import Settings

if TYPE_CHECKING:
    from infra.template import MeshConfig


@dataclass(frozen=True)
class StackPart:
    resources: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    role_statements: Sequence[Mapping[str, Any]] = ()  # added to the functions' role
    gateway_env: Mapping[str, Any] = field(default_factory=dict)  # may hold {"Ref": ...}


PartBuilder = Callable[[Mapping[str, Artifact], Settings, "MeshConfig"], StackPart]


def part_builders() -> tuple[PartBuilder, ...]:
    """Every feature's part, in a fixed order (so the rendered template is stable)."""
    from infra import (
        part_async,
        part_auth,
        part_authorized_edge,
        part_bench_echo,
        part_events,
        part_ratelimit,
    )

    return (part_auth.part, part_ratelimit.part, part_async.part, part_events.part,
            part_authorized_edge.part, part_bench_echo.part)


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
