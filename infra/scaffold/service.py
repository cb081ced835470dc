"""Write a new service into a project tree: pure planning (``plan_service``: every file and
its text) and a thin writer (``write_plan``) that refuses to overwrite anything.

What is written for ``NAME``: ``functions/NAME/`` (service, worker, Kafka-event Lambda
entry), ``policies/NAME.yaml`` (service, operations, request topic, access, an optional
route), ``policies/schemas/NAME-item.json`` with a route, ``tests/unit/test_NAME_service.py``,
and ``NAME.*`` added to the edge's ``call`` list in the policy file that grants it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.scaffold import templates

# Both a policy service name (bus.policy.model.SERVICE_PATTERN: no "_") and a Python
# package name (no "-"): letters and digits.
NAME = re.compile(r"^[a-z][a-z0-9]{1,31}$")
OPERATION = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/[A-Za-z0-9_./{}-]*)$")
PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED = frozenset({"gateway", "shared", "mesh", "bus", "infra", "functions", "tests"})
EDGE_CALL = re.compile(r"^(?P<head>\s+call:\s*\[)(?P<items>[^\]]*)(?P<tail>\].*)$")


class ScaffoldError(InfraError):
    """The service cannot be written as asked (bad name, existing files, ...)."""


@dataclass(frozen=True)
class Plan:
    name: str
    files: dict[str, str]  # path relative to the project root -> text
    edge_file: str | None = None  # the policy file whose edge access gets NAME.*
    edge_text: str | None = None


def validate(name: str, operations: Sequence[str], route: str | None) -> None:
    if not NAME.match(name) or name in RESERVED:
        raise ScaffoldError(f"service name {name!r} is not usable",
                            "use 2-32 of a-z and 0-9, starting with a letter (it is both "
                            "a policy service name and a Python package), not a reserved one")
    for op in operations:
        if not OPERATION.match(op):
            raise ScaffoldError(f"operation {op!r} is not usable",
                                "use a-z, 0-9 and _, starting with a letter; NAME. is added")
    if len(set(operations)) != len(operations) or not operations:
        raise ScaffoldError("operations must be distinct and at least one", "e.g. get,list")
    if route is not None and not ROUTE.match(route):
        raise ScaffoldError(f"route {route!r} is not 'METHOD /path'",
                            "e.g. --route 'GET /v1/catalog/{id}'")


def plan_service(name: str, operations: Sequence[str] = ("get",),
                 route: str | None = None) -> Plan:
    """Every file of the new service (pure: nothing is read or written)."""
    validate(name, operations, route)
    full = [f"{name}.{op}" for op in operations]
    handlers = "".join(templates.HANDLER.format(var=name, operation=operation, function=op)
                       for op, operation in zip(operations, full, strict=True))
    path_params = PARAM.findall(route.split(" ", 1)[1]) if route is not None else []
    # The handler's request field: the route's first path parameter (the gateway passes it
    # as that payload field), else "id".
    fmt = {"name": name, "var": name, "key": path_params[0] if path_params else "id"}
    files = {
        f"functions/{name}/__init__.py": f'"""The ``{name}`` service."""\n',
        f"functions/{name}/service.py": templates.SERVICE.format(handlers=handlers, **fmt),
        f"functions/{name}/worker.py": templates.WORKER.format(**fmt),
        f"functions/{name}/lambda_handler.py": templates.LAMBDA.format(**fmt),
        f"tests/unit/test_{name}_service.py": templates.TEST.format(
            first=full[0], first_function=operations[0], **fmt),
    }
    routes = ""
    if route is not None:
        match = ROUTE.match(route)
        assert match is not None  # validated
        method, path = match.groups()
        params = "".join(f"      {p}: {{type: string, pattern: \"^[A-Za-z0-9_-]{{1,64}}$\"}}\n"
                         for p in PARAM.findall(path))
        routes = templates.ROUTE.format(method=method, path=path, operation=full[0], name=name,
                                        params=f"    params:\n{params}" if params else "")
        files[f"policies/schemas/{name}-item.json"] = templates.ITEM_SCHEMA.format(key=fmt["key"])
    files[f"policies/{name}.yaml"] = templates.POLICY.format(
        name=name, operations=", ".join(full), routes=routes)
    return Plan(name, files)


def grant_edge(text: str, name: str, edge: str = "gateway") -> str | None:
    """``text`` (a policy file) with ``NAME.*`` in the edge's ``access: EDGE: call: [...]``
    flow list; None when the file has no such list (then nothing is changed)."""
    lines = text.splitlines(keepends=True)
    section = service = False
    for i, line in enumerate(lines):
        if re.match(r"^\S", line):
            section, service = line.startswith("access:"), False
        elif section and re.match(r"^  \S", line):
            service = line.strip().rstrip(":").split(":")[0] == edge
        elif section and service and (match := EDGE_CALL.match(line.rstrip("\n"))):
            items = [item.strip() for item in match["items"].split(",") if item.strip()]
            if f"{name}.*" in items:
                return text
            items.append(f"{name}.*")
            lines[i] = f"{match['head']}{', '.join(items)}{match['tail']}\n"
            return "".join(lines)
    return None


def with_edge_grant(plan: Plan, root: Path, edge: str = "gateway") -> Plan:
    """The plan plus the edit that lets the edge call the service (read from ``root``)."""
    for file in sorted((root / "policies").glob("*.y*ml")):
        text = file.read_text()
        changed = grant_edge(text, plan.name, edge)
        if changed is not None:
            return Plan(plan.name, plan.files, str(file.relative_to(root)), changed)
    raise ScaffoldError(f"no policy file gives {edge!r} a 'call: [...]' list under access",
                        f"add 'call: [{plan.name}.*]' to access: {edge}: yourself")


def write_plan(plan: Plan, root: Path) -> list[str]:
    """Write every file; refuses (writing nothing) when any exists already."""
    existing = [path for path in plan.files if (root / path).exists()]
    if (root / "functions" / plan.name).exists():
        existing.append(f"functions/{plan.name}/")
    if existing:
        raise ScaffoldError(f"refusing to overwrite {', '.join(sorted(set(existing)))}",
                            "pick another name or remove them")
    for path, text in plan.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if plan.edge_file is not None and plan.edge_text is not None:
        (root / plan.edge_file).write_text(plan.edge_text)
    return [*plan.files, *([plan.edge_file] if plan.edge_file else [])]
