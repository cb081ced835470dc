"""``meshgate docs [--out DIR]``: write DIR/openapi.json (the edge) and DIR/asyncapi.json
(the mesh), both generated from the policies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from infra.cli.docs.asyncapi import asyncapi_document
from infra.cli.docs.openapi import openapi_document
from infra.errors import InfraError
from infra.policy import load_policy
from infra.settings import Settings
from infra.tui import Say, plain_say

OPENAPI_FILE = "openapi.json"
ASYNCAPI_FILE = "asyncapi.json"


def docs_command(settings: Settings, out: Path, say: Say) -> tuple[Path, Path]:
    policy = load_policy(settings.root / "policies")
    try:
        openapi = openapi_document(policy)
    except ValueError as exc:
        raise InfraError(f"docs: the edge cannot be built from the policy ({exc})",
                         "run 'meshgate policy check' and fix what it reports") from None
    asyncapi = asyncapi_document(policy, bootstrap=settings.kafka_bootstrap,
                                 version=str(openapi.get("info", {}).get("version", "0.1.0")))
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = (_write(out / OPENAPI_FILE, openapi), _write(out / ASYNCAPI_FILE, asyncapi))
    except OSError as exc:
        raise InfraError(f"docs: cannot write to {out} ({exc.strerror or exc})",
                         "pass a writable folder with --out") from None
    say(f"wrote {written[0]} (OpenAPI {openapi['openapi']}, {len(openapi['paths'])} paths)")
    say(f"wrote {written[1]} (AsyncAPI {asyncapi['asyncapi']}, {len(asyncapi['channels'])} "
        f"channels, {len(asyncapi['operations'])} operations)")
    return written


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def register(commands: Any) -> None:
    """Add ``docs`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    docs = commands.add_parser("docs", help="write the edge's OpenAPI and the mesh's AsyncAPI "
                               "documents, generated from the policies")
    docs.add_argument("--out", default="docs/api", metavar="DIR",
                      help="the folder to write openapi.json and asyncapi.json to "
                           "(default: docs/api)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    docs_command(settings, Path(args.out), plain_say)
    return 0
