"""``meshgate new service NAME``: scaffold a service, its policy entries and its test."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from infra.policy import check_files
from infra.scaffold.service import PARAM, ScaffoldError, plan_service, with_edge_grant, write_plan
from infra.settings import Settings
from infra.tui import Say


def register(commands: Any) -> None:
    """Add ``new`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    new = commands.add_parser("new", help="write a new service from a template")
    kinds = new.add_subparsers(dest="new_command", required=True)
    service = kinds.add_parser("service", help="functions/NAME/, policies/NAME.yaml and a test")
    service.add_argument("name", help="the service name (a-z, 0-9)")
    service.add_argument("--route", help="an HTTP route to its first operation, e.g. "
                         "'GET /v1/NAME/{id}' (path parameters become payload fields)")
    service.add_argument("--operations", default="get",
                         help="comma-separated operation names (default: get -> NAME.get)")
    service.add_argument("--root", type=Path, help="the project to write into (default: this)")


def run(args: argparse.Namespace, settings: Settings, say: Say) -> int:
    root: Path = args.root if args.root is not None else settings.root
    operations = [op.strip() for op in args.operations.split(",") if op.strip()]
    plan = plan_service(args.name, operations, args.route)
    before = check_files([root / "policies"])
    if before.policy is not None and args.name in before.policy.services:
        raise ScaffoldError(f"service {args.name!r} is already in the policies",
                            "pick another name")
    written = write_plan(with_edge_grant(plan, root), root)
    for path in written:
        say(f"wrote {path}")
    report = check_files([root / "policies"])
    for problem in report.problems:
        say(str(problem))
    if not report.ok:
        say("policy check: the new policy has errors (above); fix them before 'make up'")
        return 1
    say("policy check: ok")
    say("next steps:")
    say(f"  .venv/bin/pytest -q tests/unit/test_{args.name}_service.py   # in-memory mesh")
    say("  make up          # topics, deploy (the gateway serves the route), and its worker")
    if args.route:
        method, path = args.route.split(" ", 1)
        example = PARAM.sub(r"\1-1", path)  # /v1/catalog/{sku} -> /v1/catalog/sku-1
        say(f'  curl -sS -X {method} "$ENDPOINT{example}"')
    return 0
