"""``meshgate policy check | schema | plan | apply | graph``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from infra import tui
from infra.policy.acls import (
    apply_sentence,
    derive_acls,
    managed_principals,
    no_authorizer_sentence,
    plan_sentence,
)
from infra.policy.derive import topic_specs
from infra.policy.editor_schema import write_schema
from infra.policy.graph import graph_from_files, render
from infra.policy.load import Report, check_files, display_name, load_policy
from infra.policy.plan_text import apply_summary, plan_summary
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
        print(f"policy check: {check_summary(report)}", file=out, flush=True)
        return 1
    policy = report.policy
    say(f"policies are valid: {_count(len(policy.services), 'service')}, "
        f"{_count(len(policy.topics), 'topic')}, {_count(len(policy.routes), 'route')}")
    return 0


def check_summary(report: Report) -> str:
    """``3 errors in 2 files``, and what was not checked, if anything."""
    errors = _count(len(report.problems), "error")
    text = f"{errors} in {_count(report.files_with_problems, 'file')}"
    if not report.checked_references:
        text += (" (the cross-reference checks wait for the files that are not readable YAML "
                 "mappings)")
    elif report.held_back:
        text += (f" ({_count(report.held_back, 'cross-reference finding')} about entries "
                 "with schema errors held back until those are fixed)")
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


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
    else:
        for line in plan.changes():
            say(line)
    for line in plan.notes(unmanaged=False):
        say(line)
    say(plan_summary(plan, len(wanted)))
    if apply and not plan.empty:
        done = topics.apply(settings, plan)
        for line in done:
            say(line)
        say(apply_summary(plan, len(wanted), done))
    for line in acl_command(settings, apply=apply):
        say(line)
    return 1 if plan.impossible else 0


def acl_command(settings: Settings, *, apply: bool) -> list[str]:
    """The ACL half of ``policy plan`` / ``apply`` (and of ``meshgate up``): the broker's
    ACLs of the principals the policy manages against those it derives
    (``infra.policy.acls``). Nothing when the policy has no principal; one sentence when the
    broker has no authorizer (a plaintext development broker: nothing to apply)."""
    import asyncio

    from infra.kafka import acl_admin

    policy = load_policy(settings.root / "policies")
    stack = settings.stack_name  # its principals carry its marker: they are removed with it
    rules = derive_acls(policy, stack=stack)
    managed = managed_principals(policy)
    if not managed:
        return []
    bootstrap = settings.kafka_bootstrap
    try:
        plan = asyncio.run(acl_admin.plan_live(bootstrap, rules, managed, settings=settings,
                                               stack=stack))
    except acl_admin.NoAuthorizer:
        return [no_authorizer_sentence(len(rules), bootstrap)]
    lines = [*plan.changes(), *plan.notes(), plan_sentence(plan)]
    if apply and not plan.empty:
        lines += asyncio.run(acl_admin.apply_live(bootstrap, plan, rules, managed,
                                                  settings=settings, stack=stack))
        lines.append(apply_sentence(plan))
    return lines


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
