"""The stack part of the ratelimit feature (see ``infra.stack_parts``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from infra.package import Artifact
from infra.settings import Settings
from infra.stack_parts import StackPart

if TYPE_CHECKING:
    from infra.template import MeshConfig


def part(artifacts: Mapping[str, Artifact], settings: Settings, mesh: MeshConfig) -> StackPart:
    return StackPart()
