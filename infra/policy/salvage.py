"""The entries of a policy file that match the schema, when the file as a whole does not.

``meshgate policy check`` reports a file's schema errors AND runs the cross-reference checks
over what did parse: each keyed entry (a service, a topic, ...), each route and the edge
settings are validated on their own, and the valid ones take part in the checks. The names of
the entries that did not parse are ``held``: a cross-reference finding that mentions one is
held back, since the broken entry may be exactly what it refers to (no false "not declared").

A file whose shape is unknown (unreadable, a YAML syntax error, not a mapping, a section of
the wrong kind) is ``opaque``: nothing of it is known, so no cross-reference check can be
trusted and none runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bus.policy.checks import Finding
from bus.policy.model import Policy

KEYED = ("services", "topics", "access", "traffic", "operators")
EDGE_TOKEN = "edge.jwt"  # the check that needs the edge settings names them so


@dataclass
class Salvage:
    """What of one file takes part in the cross-reference checks."""

    policy: Policy | None  # the valid entries; None when the file is opaque
    route_lines: list[int] = field(default_factory=list)  # salvaged route -> index in the file
    held: set[str] = field(default_factory=set)  # names of entries that did not parse

    @property
    def opaque(self) -> bool:
        return self.policy is None


def salvage(data: Any) -> Salvage:
    """The valid entries of ``data`` (one file's parsed YAML). Pure."""
    if not isinstance(data, dict):
        return Salvage(None)
    kept: dict[str, Any] = {}
    held: set[str] = set()
    for section, value in data.items():
        if value is None:  # an empty section: its schema error says so, nothing to salvage
            continue
        if section in KEYED:
            if not isinstance(value, dict):
                return Salvage(None)
            good = {key: entry for key, entry in value.items()
                    if _valid({section: {key: entry}})}
            held.update(str(key) for key in value if key not in good)
            kept[section] = good
        elif section == "routes":
            if not isinstance(value, list):
                return Salvage(None)
        elif section == "edge":
            if _valid({"edge": value}):
                kept["edge"] = value
            else:
                held.add(EDGE_TOKEN)
        elif isinstance(value, dict):  # a misspelt section: its entries are unknown names
            held.update(str(key) for key in value)
        elif isinstance(value, list):
            return Salvage(None)
    routes = data.get("routes") or []
    route_lines = [i for i, route in enumerate(routes) if _valid({"routes": [route]})]
    kept["routes"] = [routes[i] for i in route_lines]
    return Salvage(Policy.model_validate_json(json.dumps(kept), strict=True), route_lines, held)


def _valid(part: dict[str, Any]) -> bool:
    try:
        Policy.model_validate_json(json.dumps(part), strict=True)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


def held_back(finding: Finding, held: Iterable[str]) -> bool:
    """Whether ``finding`` mentions a name whose entry did not parse. The label a finding may
    start with (``access.gateway.consume:``) names the entry it is in, which did parse."""
    what = re.sub(r"^\S+: ", "", finding.what)
    text = f"{what} {finding.fix} {finding.detail}"
    return any(re.search(rf"(?<![A-Za-z0-9_-]){re.escape(name)}(?![A-Za-z0-9_-])", text)
               for name in held)
