"""The ``meshgate`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from bus.errors import MeshError
from infra import tui
from infra.cli import dlq as dlq_cli
from infra.cli import keys as keys_cli
from infra.cli import new as new_cli
from infra.cli import template as template_cli
from infra.cli import token as token_cli
from infra.cli import trace as trace_cli
from infra.cli.docs import cli as docs_cli
from infra.cli.tail import cli as tail_cli
from infra.deploy import pipeline
from infra.errors import InfraError
from infra.local import lifecycle
from infra.policy import commands as policy_commands
from infra.settings import Settings


def _status_rows(state: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``meshgate status`` as rows: what, state, where."""
    def running(up: object) -> str:
        return "running" if up else "stopped"

    kafka = state["kafka"]
    rows = [("kafka", running(kafka["running"]), str(kafka["bootstrap"]))]
    for protocol, address in kafka.get("listeners", {}).items():  # the local broker's others
        if protocol != "PLAINTEXT":
            mesh = " (the mesh)" if protocol == kafka.get("mesh") else ""
            rows.append((f"kafka {protocol}", running(kafka["running"]), f"{address}{mesh}"))
    rows.append(("emulator", running(state["emulator"]["running"]), str(state["emulator"]["url"])))
    for name in ("endpoint", "authorized_endpoint"):
        value = state.get(name)
        rows.append((name.replace("_", " "), "deployed" if value else "-", str(value or "-")))
    for worker, pid in state["workers"].items():
        rows.append((f"worker {worker}", running(pid), "-" if pid is None else f"pid {pid}"))
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start broker, emulator, topics, stack and workers")
    up.add_argument("--no-demo", action="store_true", help="skip the demo call at the end")
    down = commands.add_parser("down", help="stop workers, emulator and broker (state is kept)")
    down.add_argument("--workers-only", action="store_true", help="stop only the service workers")
    status = commands.add_parser("status", help="what is running, and the endpoint")
    status.add_argument("--json", action="store_true", help="one JSON object")
    deploy = commands.add_parser("deploy", help="package the functions and deploy the stack")
    deploy.add_argument("--dry-run", action="store_true",
                        help="print the template and the changes a deploy would make; "
                             "change nothing")
    commands.add_parser("topics", help="create or grow the topics declared in policies/")
    dlq = commands.add_parser("dlq", help="inspect and replay a dead-letter topic")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_commands.add_parser("list", help="the dead letters of TOPIC")
    dlq_list.add_argument("topic")
    dlq_list.add_argument("--limit", type=int, default=100)
    for name, text in (("show", "one dead letter, whole"), ("replay", "send it again")):
        sub = dlq_commands.add_parser(name, help=text)
        sub.add_argument("topic")
        sub.add_argument("id", help="the message id (ce_id) of the dead letter")
    policy = commands.add_parser("policy", help="check, plan, apply and draw the policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="validate policies/*.yaml; every error with "
                                  "file, line and fix")
    check.add_argument("files", nargs="*", help="policy files or folders (default: policies/)")
    policy_sub.add_parser("schema", help="write policies/schema.json from the policy model")
    for name, text in (("plan", "the topic changes the policies ask for, against the broker"),
                       ("apply", "make those changes (twice: nothing the second time)")):
        sub = policy_sub.add_parser(name, help=text)
        sub.add_argument("--allow-delete", action="store_true",
                         help="also delete undeclared topics under the managed prefixes")
    graph = policy_sub.add_parser("graph", help="the service and topic graph")
    graph.add_argument("--format", choices=("mermaid", "svg"), default="mermaid")
    graph.add_argument("--output", help="write to this file instead of printing")
    token_cli.register(commands)
    keys_cli.register(commands)
    tail_cli.register(commands)
    docs_cli.register(commands)
    trace_cli.register(commands)
    new_cli.register(commands)
    template_cli.register(commands)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.resolve()
    _say = tui.sayer()  # plain lines unless stdout is a terminal
    if args.command == "up":
        lifecycle.up(settings, _say, smoke_call=not args.no_demo)
    elif args.command == "down":
        lifecycle.down(settings, _say, workers_only=args.workers_only)
    elif args.command == "status":
        state = lifecycle.status(settings)
        if args.json:
            print(json.dumps(state))
        else:
            tui.show_table(_say, ("WHAT", "STATE", "WHERE"), _status_rows(state),
                           title="meshgate status")
    elif args.command == "deploy" and args.dry_run:
        return template_cli.show(settings, build=True, changes=True)
    elif args.command == "deploy":
        with tui.activity(_say, "package and deploy"):
            endpoint = pipeline.deploy_stack(settings, _say)
        _say(f"endpoint: {endpoint}")
    elif args.command == "dlq":
        if args.dlq_command == "list":
            dlq_cli.list_command(settings, args.topic, args.limit, _say)
        elif args.dlq_command == "show":
            dlq_cli.show_command(settings, args.topic, args.id, _say)
        else:
            dlq_cli.replay_command(settings, args.topic, args.id, _say)
    elif args.command == "policy":
        if args.policy_command == "check":
            return policy_commands.check_command(args.files, settings.root, _say)
        if args.policy_command in ("plan", "apply"):
            return policy_commands.plan_command(settings, _say, allow_delete=args.allow_delete,
                                                apply=args.policy_command == "apply")
        if args.policy_command == "graph":
            return policy_commands.graph_command(settings.root, _say, fmt=args.format,
                                                 output=args.output)
        return policy_commands.schema_command(settings.root, _say)
    elif args.command == "token":
        return token_cli.run(args, settings)
    elif args.command == "keys":
        return keys_cli.run(args, settings)
    elif args.command == "tail":
        return tail_cli.run(args, settings)
    elif args.command == "docs":
        return docs_cli.run(args, settings)
    elif args.command == "trace":
        return trace_cli.run(args, settings)
    elif args.command == "template":
        return template_cli.run(args, settings)
    elif args.command == "new":
        return new_cli.run(args, settings, _say)
    elif args.command == "topics":
        plan = lifecycle.provision_topics(settings)
        _say("no changes" if plan.empty else f"created {[s.name for s in plan.create]}, "
             f"grew {[g[0] for g in plan.grow]}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(argv)
    except InfraError as exc:
        print(f"meshgate: error: {exc}", file=sys.stderr)
        code = 1
    except MeshError as exc:
        print(f"meshgate: error: {exc.code}: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
