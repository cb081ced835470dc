"""``meshgate policy check | schema | plan | apply | graph``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from infra import tui
from infra.policy.derive import topic_specs
from infra.policy.editor_schema import write_schema
from infra.policy.graph import graph_from_files, render
from infra.policy.load import check_files, display_name
from infra.settings import Settings

Say = Callable[[str], None]


def check_command(files: Sequence[str], root: Path, say: Say,
                  errors: TextIO | None = None) -> int:
    """Check ``files`` (default: ``<root>/policies``); every problem on its own line as
    ``file:line: what; fix``. Returns the exit code: 0 if all is well, else 1."""
    out = errors if errors is not None else sys.stderr
    report = check_files([Path(f) for f in files] if files else [root / "policies"])
    for problem in report.problems:
        print(problem, file=out, flush=True)
    if report.problems or report.policy is None:
        later = ("" if report.checked_references else
                 " (the cross-reference checks run once every file matches the schema)")
        print(f"policy check: {len(report.problems)} error(s){later}", file=out, flush=True)
        return 1
    policy = report.policy
    say(f"policy ok: {len(policy.services)} services, {len(policy.topics)} topics, "
        f"{len(policy.routes)} routes")
    return 0


def schema_command(root: Path, say: Say) -> int:
    say(f"wrote {display_name(write_schema(root))}")
    return 0


def plan_command(settings: Settings, say: Say, *, allow_delete: bool, apply: bool) -> int:
    """``meshgate policy plan`` (and ``apply``): the topic changes the policies ask for.
    Exit 1 when a declared change is impossible (shrinking, replication)."""
    from infra.kafka import topics

    wanted = topic_specs(settings.root / "policies")
    plan = topics.plan(settings, wanted, allow_delete=allow_delete)
    if isinstance(say, tui.RichSay) and not plan.empty:  # a terminal: the changes as a table
        tui.show_table(say, ("", "CHANGE"), [(line[:1], line[2:]) for line in plan.changes()],
                       title="topic plan")
        for line in plan.notes(unmanaged=False):
            say(line)
    else:
        for line in plan.render(unmanaged=False).splitlines():
            say(line)
    if apply and not plan.empty:
        for line in topics.apply(settings, plan):
            say(line)
    return 1 if plan.impossible else 0


def graph_command(root: Path, say: Say, *, fmt: str, output: str | None) -> int:
    """``meshgate policy graph``: Mermaid text (default) or an SVG picture of the mesh."""
    if fmt not in ("mermaid", "svg"):
        raise ValueError(f"unknown graph format {fmt!r}")
    text = render(graph_from_files(root / "policies"), "svg" if fmt == "svg" else "mermaid")
    if output is None:
        say(text)
    else:
        Path(output).write_text(text)
        say(f"wrote {output}")
    return 0
