"""One policy file read with line numbers: ``yaml.compose`` keeps every node's position, so
any place in the data (``("routes", 0, "operation")``) maps back to its line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bus.policy.checks import dotted
from bus.policy.model import Loc

MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake: where it is and what to do about it."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if self.line < 1:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Source:
    """A policy file's data (plain JSON-like values) and the line of every place in it."""

    file: Path
    name: str  # as shown in messages
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: Loc) -> int:
        """The line of ``path``, or of the deepest place on the way to it that exists (a
        missing key is reported on its parent's line)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def has(self, path: Loc) -> bool:
        return tuple(path) in self.lines

    def problem(self, path_or_line: Loc | int, message: str) -> Problem:
        line = path_or_line if isinstance(path_or_line, int) else self.line_of(path_or_line)
        found = Problem(self.name, line, message)
        self.problems.append(found)
        return found

    def where(self, path: Loc) -> str:
        return f"{self.name}:{self.line_of(path)}"


def read_source(file: Path, name: str | None = None) -> Source:
    """Read and compose ``file``; YAML mistakes become problems, never exceptions."""
    source = Source(file, name or str(file))
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        source.problem(1, f"cannot read the file ({exc.__class__.__name__}: {exc}); "
                          "check the path and that it is UTF-8 text")
        return source
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        if "another document" in str(exc.problem):
            source.problem(line, "a policy file holds one YAML document, this one has more; "
                                 "remove the '---' line or put each document in its own file")
        else:
            source.problem(line, f"YAML syntax error: {exc.problem or exc.context}; fix the "
                                 "YAML (indentation, a missing ':' or an unclosed quote)")
        return source
    except yaml.YAMLError as exc:
        source.problem(1, f"YAML error: {exc}; fix the YAML")
        return source
    source.lines[()] = 1
    if root is None:
        source.data = {}
        return source
    source.data = _Converter(source).convert(root, ())
    return source


class _Converter:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = SafeConstructor()
        self.active: set[int] = set()

    def convert(self, node: Node, path: Loc) -> Any:
        if id(node) in self.active:
            self.source.problem(node.start_mark.line + 1,
                                f"{dotted(path)} refers to itself through an alias; "
                                "remove the recursive alias")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self._item(child, (*path, i)) for i, child in enumerate(node.value)]
            assert isinstance(node, ScalarNode)
            return self._scalar(node)
        finally:
            self.active.discard(id(node))

    def _item(self, node: Node, path: Loc) -> Any:
        self.source.lines.setdefault(path, node.start_mark.line + 1)
        return self.convert(node, path)

    def _mapping(self, node: MappingNode, path: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        # `<<: *defaults` first, so the keys written here override them.
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for merged in self._merged(value_node, path):
                    for key, value in merged.items():
                        out.setdefault(key, value)
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                self.source.problem(line, f"{dotted(path) or 'the top level'} has a key that is "
                                          "a list or a mapping; keys must be plain names")
                continue
            key = key_node.value
            child = (*path, key)
            if key in first_line:
                self.source.problem(line, f"{dotted(child)} is defined twice in this file "
                                          f"(first at line {first_line[key]}); keep one")
                continue
            first_line[key] = line
            self.source.lines[child] = line
            out[key] = self.convert(value_node, child)
        return out

    def _merged(self, node: Node, path: Loc) -> list[dict[str, Any]]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        merged: list[dict[str, Any]] = []
        for each in nodes:
            value = self.convert(each, path)
            if isinstance(value, dict):
                merged.append(value)
            else:
                self.source.problem(each.start_mark.line + 1,
                                    "'<<' merges only mappings; point it at a mapping")
        return merged

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except ConstructorError:
            return node.value
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        # Dates, binary, .inf and the like are not JSON: keep the text, the schema decides.
        return node.value
