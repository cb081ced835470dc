"""Loading the policy files: read, validate each file, merge, check the whole.

Every mistake becomes a ``Problem`` naming the file, the line and the fix. Two phases: first
YAML, schema and duplicates across files, for every file; then the consistency checks of the
merged policy (``bus.policy.checks``), whose findings are mapped back to the file and line
that define the place they are about. A file with schema errors takes part in the second
phase with the entries that did parse (``infra.policy.salvage``); findings that mention an
entry that did not are held back. Only a file of unknown shape (a YAML syntax error, not a
mapping) stops the second phase.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bus.policy.checks import check_policy
from bus.policy.edge import Edge
from bus.policy.model import Loc, Policy, Route
from infra.errors import InfraError
from infra.policy.salvage import Salvage, held_back, salvage
from infra.policy.schema_errors import schema_problems
from infra.policy.source import Problem, Source, read_source

SECTIONS = {  # keyed sections, and what one entry is called in messages
    "services": "service",
    "topics": "topic",
    "access": "access for service",
    "traffic": "traffic rules for operation",
    "operators": "operator",
}
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class PolicyError(InfraError):
    """The policies have mistakes; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        shown = "\n  ".join(str(problem) for problem in problems)
        super().__init__(f"the policies have {len(problems)} error(s):\n  {shown}",
                         "fix them ('meshgate policy check' lists them)")
        self.problems = list(problems)


@dataclass
class Report:
    sources: list[Source]
    policy: Policy | None = None  # the merged policy, when every file matched the schema
    problems: list[Problem] = field(default_factory=list)
    checked_references: bool = False
    held_back: int = 0  # cross-reference findings not shown: they name an entry that did not parse

    @property
    def ok(self) -> bool:
        return not self.problems and self.policy is not None

    @property
    def files_with_problems(self) -> int:
        return len({problem.file for problem in self.problems})


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for its ``*.yaml`` and ``*.yml`` files, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix in (".yaml", ".yml") and p.is_file()))
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def display_name(file: Path) -> str:
    """``policies/mesh.yaml`` when under the working directory, else the path as given."""
    try:
        return str(file.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file)


def check_files(paths: Iterable[Path]) -> Report:
    """Read, validate, merge and check; never raises for a mistake in the files."""
    files = policy_files(paths)
    sources = [read_source(file, display_name(file)) for file in files]
    report = Report(sources)
    if not files:
        report.problems.append(Problem("policies", 0, "no policy files found; write one, such "
                                                   "as policies/mesh.yaml"))
        return report
    parts: list[tuple[Source, Policy, list[int]]] = []
    held: set[str] = set()
    whole = True
    for source in sources:
        if source.data is None:
            whole = False  # unreadable, or a YAML syntax error: already a problem
            continue
        try:
            part = Policy.model_validate_json(json.dumps(source.data), strict=True)
            routes = list(range(len(part.routes)))
        except ValidationError as exc:
            schema_problems(source, exc)
            whole = False
            found: Salvage = salvage(source.data)
            if found.policy is None:
                continue
            part, routes, held = found.policy, found.route_lines, held | found.held
        parts.append((source, _resolve_schema_refs(source, part, routes), routes))
    _check_duplicates(sources)
    if len(parts) == len(sources):
        merged, origins = _merge(parts)
        report.policy = merged if whole else None
        report.checked_references = True

        def where(loc: Loc) -> str:
            source, local = _locate(origins, loc, sources[0])
            return source.where(local)

        for finding in check_policy(merged):
            if held_back(finding, held):
                report.held_back += 1
                continue
            source, local = _locate(origins, finding.path, sources[0])
            source.problem(local, finding.render(where))
    for source in sources:
        report.problems.extend(source.problems)
    report.problems = _in_order(report.problems, [s.name for s in sources])
    return report


def load_policy(paths: Path | Iterable[Path]) -> Policy:
    """The merged policy of ``paths`` (files or directories); ``PolicyError`` lists every
    mistake."""
    report = check_files([paths] if isinstance(paths, Path) else paths)
    if not report.ok or report.policy is None:
        raise PolicyError(report.problems)
    return report.policy


def _in_order(problems: list[Problem], files: list[str]) -> list[Problem]:
    rank = {name: i for i, name in enumerate(files)}
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (rank.get(p.file, -1), p.line))


def _check_duplicates(sources: list[Source]) -> None:
    """The same service, topic, access entry or traffic rule defined in two files."""
    first: dict[tuple[str, str], Source] = {}
    for source in sources:
        if not isinstance(source.data, dict):
            continue
        for section, noun in SECTIONS.items():
            entries = source.data.get(section)
            if not isinstance(entries, dict):
                continue
            for key in entries:
                earlier = first.setdefault((section, key), source)
                if earlier is not source:
                    source.problem(
                        (section, key),
                        f"{noun} {key} is already defined in "
                        f"{earlier.where((section, key))}; keep one definition (each {noun} "
                        "is defined in exactly one file)",
                    )
        if "edge" in source.data:
            earlier = first.setdefault(("edge", ""), source)
            if earlier is not source:
                source.problem(("edge",), f"edge is already set in {earlier.where(('edge',))}; "
                               "set the edge settings in one file")


Origins = dict[Loc, tuple[Source, Loc]]


def _merge(parts: list[tuple[Source, Policy, list[int]]]) -> tuple[Policy, Origins]:
    """The parts as one policy, and where each entry came from (a part's route ``i`` is route
    ``indices[i]`` of its file)."""
    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    routes: list[Any] = []
    edge: Edge | None = None
    origins: Origins = {}
    for source, part, indices in parts:
        for section in SECTIONS:
            for key, value in getattr(part, section).items():
                if key not in merged[section]:  # a duplicate is reported; the first counts
                    merged[section][key] = value
                    origins[(section, key)] = (source, (section, key))
        for i, route in enumerate(part.routes):
            origins[("routes", len(routes))] = (source, ("routes", indices[i]))
            routes.append(route)
        if part.edge is not None and edge is None:
            edge = part.edge
            origins[("edge",)] = (source, ("edge",))
    policy = Policy(services=merged["services"], topics=merged["topics"],
                    access=merged["access"], routes=tuple(routes), traffic=merged["traffic"],
                    edge=edge, operators=merged["operators"])
    return policy, origins


def _locate(origins: Origins, loc: Loc, fallback: Source) -> tuple[Source, Loc]:
    if loc[:1] == ("edge",):
        edge_origin = origins.get(("edge",))
        return (fallback, ()) if edge_origin is None else (edge_origin[0], tuple(loc))
    found = origins.get(tuple(loc[:2]))
    if found is None:
        return fallback, ()
    source, prefix = found
    return source, (*prefix, *loc[2:])


def _resolve_schema_refs(source: Source, part: Policy, indices: list[int]) -> Policy:
    """``part`` with each route schema that is a ``$ref`` to a file replaced by the file's
    schema, so the merged policy (and the edge's copy of it) is self-contained. Route ``i`` of
    ``part`` is route ``indices[i]`` of the file."""
    routes = list(part.routes)
    for i, route in enumerate(routes):
        resolved = {name: _schema_ref(source, route, indices[i], name)
                    for name in ("request_schema", "response_schema")}
        changes = {name: schema for name, schema in resolved.items() if schema is not None}
        if changes:
            routes[i] = route.model_copy(update=changes)
    return part.model_copy(update={"routes": tuple(routes)})


def _schema_ref(source: Source, route: Route, i: int, name: str) -> dict[str, Any] | None:
    """Request and response schemas: a ``$ref`` to a file must name a readable JSON or YAML
    file (relative to the policy file) holding one schema; an inline schema's ``type`` must be
    a JSON type. Returns the referenced file's schema, or ``None`` to keep the route's."""
    schema = getattr(route, name)
    if schema is None:
        return None
    where = ("routes", i, name)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if kind is not None and not all(isinstance(k, str) and k in JSON_TYPES for k in kinds):
        source.problem((*where, "type"),
                       f"route {route.name}: {name} has type {kind!r}, which is not a "
                       f"JSON Schema type; use one of {', '.join(sorted(JSON_TYPES))}")
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return None
    target_text, _, fragment = ref.partition("#")
    if not target_text or URL.match(target_text):
        return None
    if fragment.strip("/"):
        source.problem((*where, "$ref"),
                       f"route {route.name}: {name} refers to part #{fragment} of a file; "
                       "point at a file that holds the one schema")
        return None
    target = source.file.parent / target_text
    if not target.is_file():
        source.problem((*where, "$ref"),
                       f"route {route.name}: {name} refers to {target_text}, which does "
                       f"not exist (looked for {display_name(target)}); fix the path "
                       "(relative to the policy file) or write the schema inline")
        return None
    try:
        text = target.read_text(encoding="utf-8")
        loaded = json.loads(text) if target.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        source.problem((*where, "$ref"),
                       f"route {route.name}: {name} refers to {target_text}, which is "
                       f"not readable JSON or YAML ({exc.__class__.__name__}); fix it")
        return None
    if not isinstance(loaded, dict):
        source.problem((*where, "$ref"),
                       f"route {route.name}: {name} refers to {target_text}, which is "
                       "not a JSON Schema object; make it one")
        return None
    return loaded
