"""``meshgate tail``: follow the live calls on the mesh, one line per call.

Reads every service's request topics and the reply topics of the policy (no consumer group),
checks each record's signature against the local keyring (written by ``meshgate up``), and
matches replies to requests by correlation id. Per-pair MACs (services with ``message_auth:
pair-mac``) are checked with their receiver's secret, read from the stack's Secrets Manager
(the operator's right); a record whose receiver's secret could not be read shows as
``sealed``. A ready line goes to stderr once every
partition is positioned, so a script can start traffic after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.policy.model import Policy
from bus.security.keys import InvalidKey, KeyRing, SigningKey
from bus.security.pair_mac import PairKeys
from infra.cli.tail import render
from infra.cli.tail.match import Call, CallFilter, Matcher, decode
from infra.cli.tail.reader import TailReader
from infra.errors import InfraError
from infra.keys.mesh_keys import read_secret
from infra.policy import load_policy
from infra.settings import Settings

READ_S = 0.5
REPLY_TOPICS = ("mesh.replies", "mesh.async.replies")


@dataclass(frozen=True)
class Options:
    filter: CallFilter
    since_s: float | None = None
    count: int | None = None
    as_json: bool = False


def topics_of(policy: Policy) -> list[str]:
    """Every service's request topics, then the declared reply topics."""
    topics = [t for service in policy.services for t in policy.request_topics(service)
              if t in policy.topics]
    topics += [t for t in REPLY_TOPICS if t in policy.topics]
    return list(dict.fromkeys(topics))


def keyring_path(settings: Settings) -> Path:
    return settings.local_dir / "identity" / "keyring.json"


def load_keyring(settings: Settings) -> KeyRing:
    path = keyring_path(settings)
    try:
        return KeyRing.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InfraError(f"tail: no keyring at {path}",
                         "run 'meshgate up' (or 'meshgate deploy'), which writes it") from None
    except (ValueError, InvalidKey) as exc:
        raise InfraError(f"tail: the keyring {path} is unreadable ({exc})",
                         "rewrite it with 'meshgate deploy'") from None


def load_pair_keys(settings: Settings, policy: Policy, note: Callable[[str], None]
                   ) -> PairKeys | None:
    """The secrets of the services that accept per-pair MACs, to check the MACs sent to
    them; a secret that cannot be read leaves that service's records ``sealed``."""
    keys: list[SigningKey] = []
    for service in policy.pair_mac_services():
        try:
            secret = read_secret(settings, service)
        except InfraError as exc:
            note(f"tail: cannot read {service}'s key ({exc}): pair MACs sent to it show as "
                 "sealed")
            continue
        keys += [key for key in (secret.current, secret.next) if key is not None]
    return PairKeys(keys) if keys else None


async def follow(settings: Settings, policy: Policy, keyring: KeyRing, options: Options,
                 emit: Callable[[Call], None], ready: Callable[[str], None],
                 pair: PairKeys | None = None) -> Matcher:
    """Read until ``options.count`` calls were emitted (forever without a count)."""
    topics = topics_of(policy)
    since_ms = None if options.since_s is None else int((time.time() - options.since_s) * 1000)
    reader = TailReader(settings.kafka_bootstrap, topics, since_ms=since_ms, settings=settings)
    matcher = Matcher(owners=policy.owners())
    emitted = 0
    await reader.start()
    try:
        start = "the end" if since_ms is None else f"{options.since_s:g}s ago"
        ready(f"tail: following {', '.join(topics)} ({len(reader.partitions)} partitions) "
              f"from {start}; Ctrl-C to stop")
        while options.count is None or emitted < options.count:
            calls: list[Call] = []
            for record in await reader.read(READ_S):
                seen = decode(record.topic, record.partition, record.offset,
                              record.timestamp_ms, record.headers, record.value, keyring,
                              pair)
                calls.extend(matcher.feed(seen))
            calls.extend(matcher.expire(time.time_ns() // 1_000_000))
            for call in calls:
                if options.filter.accepts(call) and (options.count is None
                                                     or emitted < options.count):
                    emit(call)
                    emitted += 1
    finally:
        await reader.stop()
    return matcher


def _printer(as_json: bool) -> Callable[[Call], None]:
    if as_json:
        return lambda call: print(render.json_line(call), flush=True)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False)
        console.print(Text(render.header(), style="bold"))
        return lambda call: console.print(Text(render.text_line(call),
                                               style=render.style_of(call)), soft_wrap=True)
    print(render.header(), flush=True)
    return lambda call: print(render.text_line(call), flush=True)


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def register(commands: Any) -> None:
    """Add ``tail`` to the ``meshgate`` subcommands (an argparse subparsers action)."""
    tail = commands.add_parser("tail", help="follow live calls on the mesh (decoded, verified)")
    tail.add_argument("--operation", metavar="GLOB", help="only these operations (orders.*)")
    tail.add_argument("--service", metavar="NAME", help="only calls made or served by NAME")
    tail.add_argument("--trace", metavar="TRACE_ID", help="only calls of this trace")
    tail.add_argument("--since", type=float, metavar="SECONDS",
                      help="start SECONDS ago instead of now")
    tail.add_argument("--count", type=int, metavar="N", help="exit after N calls")
    tail.add_argument("--json", action="store_true", help="one JSON object per call")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.count is not None and args.count < 1:
        raise InfraError(f"tail: --count {args.count} is not a positive number",
                         "pass --count 1 or more")
    if args.since is not None and args.since < 0:
        raise InfraError(f"tail: --since {args.since:g} is negative", "pass seconds >= 0")
    policy = load_policy(settings.root / "policies")
    keyring = load_keyring(settings)
    options = Options(CallFilter(args.operation, args.service, args.trace), args.since,
                      args.count, args.json)
    try:
        pair = load_pair_keys(settings, policy, _note)
        matcher = asyncio.run(follow(settings, policy, keyring, options,
                                     _printer(args.json), _note, pair))
    except KeyboardInterrupt:
        _note("tail: stopped")
        return 0
    if matcher.pending or matcher.dropped:
        _note(f"tail: {matcher.pending} call(s) still unanswered, {matcher.dropped} forgotten")
    return 0
