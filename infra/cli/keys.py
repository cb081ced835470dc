"""``meshgate keys``: issue, list and revoke the edge's API keys in the deployed stack;
``keys rotate`` and ``keys mesh`` rotate and list the mesh's signing keys
(``infra.cli.keys_rotate``).

The table is the stack's ``ApiKeysTableName`` output; issuing digests the new key with the
pepper from Secrets Manager (``infra.keys.pepper``) and prints the plaintext key once: it is
stored nowhere, and cannot be shown again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from functions.gateway.auth.api_keys import ApiKeyHasher, ApiKeyRecord, UsagePlan, issue_api_key
from functions.gateway.auth.dynamodb_keys import ApiKeyStoreUnavailable, DynamoDBApiKeyStore
from infra import tui
from infra.cli import keys_rotate
from infra.deploy import aws as deploy
from infra.errors import DeployFailed, InfraError
from infra.keys import pepper
from infra.settings import Settings

Say = Callable[[str], None]
TABLE_OUTPUT = "ApiKeysTableName"


def key_store(settings: Settings) -> DynamoDBApiKeyStore:
    """The deployed stack's key store (refused clearly when there is none)."""
    outputs = deploy.stack_outputs(settings)
    if not outputs or TABLE_OUTPUT not in outputs:
        raise InfraError(f"stack {settings.stack_name} has no API-keys table",
                         "deploy it first with 'meshgate deploy'")
    return DynamoDBApiKeyStore(outputs[TABLE_OUTPUT], client_args=settings.aws_client_args())


def _store_errors(what: str, error: ApiKeyStoreUnavailable) -> InfraError:
    return DeployFailed(f"{what}: {error.detail or error.message}",
                        "check that the stack is deployed and the emulator (or AWS) answers")


def plan_text(plan: UsagePlan) -> str:
    quota = "unlimited" if plan.daily_quota is None else f"{plan.daily_quota}/day"
    return f"{plan.rate_per_s:g}/s burst {plan.burst}, quota {quota}"


HEADERS = ("KEY ID", "OWNER", "STATE", "RATE/S", "BURST", "DAILY QUOTA")


def rows(records: list[ApiKeyRecord]) -> list[tuple[str, ...]]:
    """One row per key (never a digest: it is of no use to a person)."""
    return [(r.key_id, r.owner, "revoked" if r.revoked else "active",
             f"{r.plan.rate_per_s:g}", str(r.plan.burst),
             "-" if r.plan.daily_quota is None else str(r.plan.daily_quota)) for r in records]


def table(records: list[ApiKeyRecord]) -> list[str]:
    """Readable rows, one per key."""
    return tui.plain_table(HEADERS, rows(records))


def issue_command(settings: Settings, say: Say, *, owner: str, rate: float, burst: int,
                  quota: int | None) -> ApiKeyRecord:
    try:
        plan = UsagePlan(rate_per_s=rate, burst=burst, daily_quota=quota)
    except ValueError as exc:
        raise InfraError(f"keys issue: {exc}",
                         "pass --rate > 0, --burst >= 1, --quota >= 1") from None
    if not owner.strip():
        raise InfraError("keys issue: the owner is empty", "pass --owner NAME")
    store = key_store(settings)
    hasher = ApiKeyHasher(pepper.read_pepper(settings))
    try:
        key, record = asyncio.run(issue_api_key(store, hasher, owner=owner.strip(), plan=plan))
    except ApiKeyStoreUnavailable as exc:
        raise _store_errors("keys issue", exc) from exc
    say(f"issued key {record.key_id} for {record.owner} ({plan_text(plan)})")
    say("the key (shown once; it is stored only as a digest):")
    say(key)
    return record


def list_command(settings: Settings, say: Say, *, as_json: bool = False) -> list[ApiKeyRecord]:
    store = key_store(settings)
    try:
        records = asyncio.run(store.list_keys())
    except ApiKeyStoreUnavailable as exc:
        raise _store_errors("keys list", exc) from exc
    if as_json:
        say(json.dumps([{"key_id": r.key_id, "owner": r.owner, "revoked": r.revoked,
                         "rate_per_s": r.plan.rate_per_s, "burst": r.plan.burst,
                         "daily_quota": r.plan.daily_quota} for r in records]))
        return records
    tui.show_table(say, HEADERS, rows(records), title="API keys")
    say(f"{len(records)} key(s)")
    return records


def revoke_command(settings: Settings, say: Say, key_id: str) -> None:
    store = key_store(settings)
    try:
        found = asyncio.run(store.revoke(key_id))
    except ApiKeyStoreUnavailable as exc:
        raise _store_errors("keys revoke", exc) from exc
    if not found:
        raise InfraError(f"no API key {key_id}", "list them with 'meshgate keys list'")
    say(f"revoked key {key_id}: it is refused from the next request on")


def register(commands: Any) -> None:
    """Add ``keys`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    keys = commands.add_parser("keys", help="the edge's API keys (issue, list, revoke) and "
                               "the mesh's signing keys (rotate, mesh)")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    issue = sub.add_parser("issue", help="issue a key; prints it once")
    issue.add_argument("--owner", required=True, help="who the key is for (its subject)")
    issue.add_argument("--rate", type=float, required=True, help="requests per second")
    issue.add_argument("--burst", type=int, required=True, help="requests at once")
    issue.add_argument("--quota", type=int, default=None, help="requests per UTC day")
    listing = sub.add_parser("list", help="every key (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    rotate = sub.add_parser("rotate", help="rotate services' mesh signing keys with no failed "
                            "call: publish a new key, switch signing to it, retire the old one")
    rotate.add_argument("services", nargs="+", metavar="SERVICE",
                        help="the services (rotated together); resumes a rotation under way")
    rotate.add_argument("--grace", type=float, default=None, metavar="S",
                        help="seconds between steps (default: the reload interval plus the "
                        "300 s freshness window)")
    mesh = sub.add_parser("mesh", help="the live mesh keyring: key ids, services, states")
    mesh.add_argument("--json", action="store_true", help="the keyring document")


def run(args: argparse.Namespace, settings: Settings) -> int:
    _say = tui.sayer()  # plain lines unless stdout is a terminal
    if args.keys_command == "issue":
        issue_command(settings, _say, owner=args.owner, rate=args.rate, burst=args.burst,
                      quota=args.quota)
    elif args.keys_command == "list":
        list_command(settings, _say, as_json=args.json)
    elif args.keys_command == "rotate":
        grace = keys_rotate.default_grace_s(settings) if args.grace is None else args.grace
        keys_rotate.rotate_command(settings, _say, args.services, grace_s=grace)
    elif args.keys_command == "mesh":
        keys_rotate.mesh_command(settings, _say, as_json=args.json)
    else:
        revoke_command(settings, _say, args.key_id)
    return 0
