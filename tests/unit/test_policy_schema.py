"""The JSON Schema for editors is generated from the models and kept in policies/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bus.policy import Policy
from infra.policy.editor_schema import SCHEMA_FILE, policy_schema, schema_text, write_schema
from infra.settings import ROOT


def test_the_committed_schema_matches_the_models() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), "regenerate it: meshgate policy schema"


def test_the_schema_is_the_models_schema() -> None:
    schema = policy_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    generated = Policy.model_json_schema()
    assert schema["properties"] == generated["properties"]
    assert schema["$defs"] == generated["$defs"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"services", "topics", "access", "routes", "edge",
                                           "traffic", "operators"}


@pytest.mark.parametrize(
    ("model", "field", "key", "value"),
    [
        ("Route", "timeout_ms", "maximum", 3600000),
        ("Route", "auth", "enum", ["none", "jwt", "api_key"]),
        ("Topic", "cleanup_policy", "anyOf", [{"enum": ["delete", "compact"], "type": "string"},
                                              {"type": "null"}]),
        ("WeightedSubset", "weight", "maximum", 100),
    ],
)
def test_editor_sees_the_constraints(model: str, field: str, key: str, value: object) -> None:
    assert policy_schema()["$defs"][model]["properties"][field][key] == value


def test_write_schema(tmp_path: Path) -> None:
    path = write_schema(tmp_path)
    assert path == tmp_path / "policies" / "schema.json"
    assert json.loads(path.read_text()) == policy_schema()


def test_the_project_policy_names_its_schema() -> None:
    first = (ROOT / "policies" / "mesh.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schema.json"
