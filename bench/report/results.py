"""Reading the suites' results: a value at a path, formatted, and a sweep's point (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Result = Mapping[str, Any]


def suite_result(suites: Mapping[str, Any], suite: str) -> Result | None:
    """A suite's result when it ran to the end (``ok``), else None."""
    entry = suites.get(suite) or {}
    result = entry.get("result")
    return result if entry.get("ok") and isinstance(result, Mapping) else None


def get(result: Result | None, *path: str) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def sweep_point(result: Result | None, sweep: str, x: float) -> tuple[Result | None, bool]:
    """A sweep's point at ``x`` or, where that point was not run (the fast plan), the one at
    the largest ``x`` it ran; and whether it is the one asked for."""
    points = [p for p in (get(result, "points") or []) if p.get("sweep") == sweep]
    if not points:
        return None, False
    exact = [p for p in points if p.get("x") == x]
    return (exact[0], True) if exact else (
        max(points, key=lambda p: float(p.get("x", 0))), False)
