"""``meshgate template`` and ``meshgate deploy --dry-run``: the rendered CloudFormation template
on stdout, and on stderr the changes a deploy would make to the stack (if one exists and the
endpoint answers), touching nothing (``infra.deploy.dry_run``)."""

from __future__ import annotations

import sys
from typing import Any

from infra.deploy import dry_run
from infra.settings import Settings
from infra.stack import template


def register(commands: Any) -> None:
    sub = commands.add_parser(
        "template", help="print the stack's CloudFormation template and the changes a "
                         "deploy would make (no AWS call needed)")
    sub.add_argument("--package", action="store_true",
                     help="build the zips (in a scratch folder) so the S3 keys are exact")
    sub.add_argument("--no-changes", action="store_true",
                     help="do not compare with the deployed stack")


def stderr_say(line: str) -> None:
    print(line, file=sys.stderr)


def show(settings: Settings, *, build: bool, changes: bool) -> int:
    """Print the template (stdout) and, unless told not to, the changes (stderr)."""
    rendered = dry_run.render(settings, build=build)
    print(template.render(rendered))
    if changes:
        dry_run.report_changes(settings, rendered, stderr_say)
    return 0


def run(args: Any, settings: Settings) -> int:
    return show(settings, build=args.package, changes=not args.no_changes)
