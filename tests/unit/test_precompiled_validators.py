"""functions.gateway.schema_checks with infra.deploy.validators: the route checks generated at
deploy are used instead of compiling (fastjsonschema is never asked to compile), give the
same answers as a compiled check on valid and invalid values, and are ignored, never
trusted, when they do not match the schema or the installed fastjsonschema."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from bus.policy.model import Policy
from functions.gateway import schema_checks
from functions.gateway.schema_checks import PACKAGE, canonical, module_name, route_schemas
from functions.gateway.validation import RouteValidator
from infra.deploy.validators import module_source, validator_modules, write_validators
from infra.policy import load_policy
from proof.procs import ROOT

POLICY = load_policy(ROOT / "policies")
SAMPLES: list[Any] = [
    None, 0, -1, 3, 2.5, "", "sku-1", "x" * 300, True, [], {}, [1, "a"],
    {"customer": "c", "lines": [{"sku": "sku-1", "quantity": 2, "unit_price": "9.99"}]},
    {"customer": "c", "lines": []}, {"customer": 5, "lines": [{"sku": "s", "quantity": 0}]},
    {"customer": "c", "lines": [{"sku": "s", "quantity": "2", "unit_price": "x"}], "extra": 1},
    {"customer": "demo", "work_ms": 3000}, {"customer": "demo", "work_ms": -1},
]


def answer(check: schema_checks.Check, value: Any) -> tuple[str, Any]:
    try:
        return "ok", check(value)
    except fastjsonschema.JsonSchemaValueException as refused:
        return "refused", (refused.message, refused.path, refused.rule)


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The checks written as the deploy writes them, importable as in the zip."""
    write_validators(POLICY, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(schema_checks, "_compiled", {})
    yield tmp_path
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The canonical text of every schema fastjsonschema is asked to compile."""
    asked: list[str] = []
    real = fastjsonschema.compile

    def counting(schema: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(canonical(schema))
        return real(schema, *args, **kwargs)

    monkeypatch.setattr(fastjsonschema, "compile", counting)
    return asked


def schemas(policy: Policy) -> dict[str, Any]:
    return {canonical(s): s for route in policy.routes for s in route_schemas(route)}


def test_every_route_schema_has_a_module() -> None:
    modules = validator_modules(POLICY)
    texts = schemas(POLICY)
    assert len(texts) >= 3
    assert set(modules) == {f"{PACKAGE}/__init__.py"} | {
        module_name(text).replace(".", "/") + ".py" for text in texts}


def test_the_routes_use_the_deployed_checks(deployed: Path, compiles: list[str]) -> None:
    validators = [RouteValidator(route) for route in POLICY.routes]
    assert validators
    assert compiles == []
    assert set(schema_checks._compiled) == set(schemas(POLICY))


def test_a_deployed_check_answers_as_a_compiled_one(deployed: Path) -> None:
    for text, schema in schemas(POLICY).items():
        deployed_check = schema_checks.compiled(schema)
        assert deployed_check.__module__ == module_name(text)
        compiled_check = fastjsonschema.compile(dict(schema))
        for value in SAMPLES:
            assert answer(deployed_check, value) == answer(compiled_check, value), (text, value)


@pytest.mark.parametrize(("find", "replace"), [
    ("SCHEMA = '", "SCHEMA = ' "),  # generated from another schema text
    ('VERSION = "', 'VERSION = "0.'),  # by another fastjsonschema
])
def test_a_stale_module_is_compiled_over(deployed: Path, compiles: list[str], find: str,
                                         replace: str) -> None:
    text, schema = next(iter(schemas(POLICY).items()))
    path = deployed / (module_name(text).replace(".", "/") + ".py")
    path.write_text(path.read_text().replace(find, replace, 1))
    check = schema_checks.compiled(schema)
    assert compiles == [text]
    assert check.__module__ != module_name(text)


def test_a_broken_module_is_an_error_not_a_fallback(deployed: Path) -> None:
    text, schema = next(iter(schemas(POLICY).items()))
    path = deployed / (module_name(text).replace(".", "/") + ".py")
    path.write_text("import meshgate_module_that_is_not_there\n" + path.read_text())
    with pytest.raises(ModuleNotFoundError, match="meshgate_module_that_is_not_there"):
        schema_checks.compiled(schema)


def test_without_the_package_the_schema_is_compiled(monkeypatch: pytest.MonkeyPatch,
                                                    compiles: list[str]) -> None:
    monkeypatch.setattr(schema_checks, "_compiled", {})
    text, schema = next(iter(schemas(POLICY).items()))
    schema_checks.compiled(schema)
    schema_checks.compiled(schema)  # once per schema text
    assert compiles == [text]


def test_the_first_violation_is_the_one_a_runtime_compile_reports() -> None:
    """fastjsonschema checks properties in the order it reads them: a module generated from
    the canonical (sorted) text would report ``a`` here, the runtime compile reports ``b``."""
    schema = {"type": "object", "properties": {"b": {"type": "string"},
                                               "a": {"type": "integer"}}}
    namespace: dict[str, Any] = {}
    exec(module_source(canonical(schema), schema), namespace)  # the deploy's own output
    value = {"a": "x", "b": 1}
    assert answer(namespace["CHECK"], value) == answer(fastjsonschema.compile(schema), value)
    assert answer(namespace["CHECK"], value)[1][0] == "data.b must be string"
