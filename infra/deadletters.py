"""``meshgate dlq``: list, show and replay the records of a dead-letter topic.

A replay is a new message sent *as the original sender*: it is signed with that service's
key (from Secrets Manager) and must pass the same access map, so the tool cannot make a
service say anything it could not have sent itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

from bus.access import AccessPolicy
from bus.config import BusSettings
from bus.dlq import DeadLetter, list_dead_letters, replay
from bus.envelope import now_ms
from bus.identity import Identity
from bus.kafka import KafkaTransport
from bus.keys import signing_key_from_bytes
from infra import deploy, identity, tui
from infra.errors import InfraError
from infra.policy import access_map
from infra.settings import Settings

Say = Callable[[str], None]
MAX_LIST = 10_000


def _transport(settings: Settings) -> KafkaTransport:
    return KafkaTransport(BusSettings.resolve(bootstrap_servers=settings.kafka_bootstrap,
                                              service_name="meshgate-dlq", insecure=True))


async def _load(settings: Settings, topic: str, limit: int) -> list[DeadLetter]:
    transport = _transport(settings)
    try:
        return await list_dead_letters(transport, topic, limit)
    finally:
        await transport.close()


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime(
        "%Y-%m-%d %H:%M:%S")


HEADERS = ("PART@OFFSET", "ID", "TYPE", "SOURCE", "ERROR", "REASON", "FAILED AT (UTC)")


def rows(letters: list[DeadLetter]) -> list[tuple[str, ...]]:
    """One row per dead letter, in ``HEADERS`` order."""
    found: list[tuple[str, ...]] = []
    for d in letters:
        e = d.envelope
        found.append((f"{d.partition}@{d.offset}", d.id or f"(unreadable: {d.parse_error})",
                      e.type if e else "-", e.source if e else "-", d.error_code or "-",
                      d.reason or "-", _when(d.failed_at_ms)))
    return found


def table(letters: list[DeadLetter]) -> list[str]:
    """Readable rows, one per dead letter."""
    return tui.plain_table(HEADERS, rows(letters))


def list_command(settings: Settings, topic: str, limit: int, say: Say) -> int:
    letters = asyncio.run(_load(settings, topic, limit))
    tui.show_table(say, HEADERS, rows(letters), title=f"dead letters on {topic}")
    say(f"{len(letters)} dead letter(s) on {topic}")
    return len(letters)


def _find(letters: list[DeadLetter], message_id: str, topic: str) -> DeadLetter:
    for letter in letters:
        if letter.id == message_id:
            return letter
    raise InfraError(f"no dead letter with id {message_id} on {topic}",
                     f"list them with 'meshgate dlq list {topic}'")


def show_command(settings: Settings, topic: str, message_id: str, say: Say) -> None:
    letter = _find(asyncio.run(_load(settings, topic, MAX_LIST)), message_id, topic)
    say(json.dumps({
        "topic": letter.topic, "partition": letter.partition, "offset": letter.offset,
        "headers": {name: raw.decode("utf-8", "replace") for name, raw in letter.headers},
        "value": (letter.value or b"").decode("utf-8", "replace"),
        "error": {"code": letter.error_code, "message": letter.error_message,
                  "reason": letter.reason, "failed_at": _when(letter.failed_at_ms)},
    }, indent=2))


def sender_identity(settings: Settings, service: str) -> Identity:
    """The original sender's signing identity, from its key in Secrets Manager."""
    secrets = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, f"signing key of {service}"):
        raw = secrets.get_secret_value(SecretId=identity.secret_name(settings, service))
    key = signing_key_from_bytes(bytes(raw["SecretBinary"]))
    access = access_map(settings.root / "policies")
    return Identity(service, key, None, AccessPolicy.from_dict(access["produce"],
                                                              access["consume"]))


def replay_command(settings: Settings, topic: str, message_id: str, say: Say) -> str:
    async def run() -> str:
        transport = _transport(settings)
        try:
            letter = _find(await list_dead_letters(transport, topic, MAX_LIST), message_id,
                           topic)
            if letter.envelope is None:
                raise InfraError(f"dead letter {message_id} is not a readable envelope",
                                 "it cannot be replayed")
            sender = await asyncio.to_thread(sender_identity, settings, letter.envelope.source)
            return await replay(transport, letter, sign=sender.outgoing, now_ms=now_ms)
        finally:
            await transport.close()

    new_id = asyncio.run(run())
    say(f"replayed {message_id} as {new_id}")
    return new_id
