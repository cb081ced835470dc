"""The policies' traffic rules as a ``bus.traffic.table.TrafficSource`` (for processes that
read ``policies/`` directly): edit the YAML, and a ``TrafficReloader`` picks it up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bus.traffic.table import TrafficSourceError
from infra.errors import InfraError
from infra.policy.derive import traffic_document


class PolicyTrafficSource:
    def __init__(self, paths: Path) -> None:
        self.paths = paths

    def load(self) -> Mapping[str, Any]:
        try:
            return traffic_document(self.paths)
        except InfraError as exc:  # a broken edit: the reloader keeps the rules in force
            raise TrafficSourceError(str(exc)) from exc
