"""The JSON Schema of a policy file, generated from the model, for editors
(``# yaml-language-server: $schema=./schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bus.policy.model import Policy

SCHEMA_FILE = Path("policies") / "schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def policy_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(mode="validation")
    schema["title"] = "meshgate policy file"
    schema["description"] = (
        "One file of policies/: services, topics, access, HTTP routes and traffic rules. "
        "Generated from bus.policy.model by `meshgate policy schema`; do not edit."
    )
    return {"$schema": DIALECT, **schema}


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=False) + "\n"


def write_schema(root: Path) -> Path:
    """Write ``policies/schema.json`` under ``root``; returns its path."""
    path = root / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path
