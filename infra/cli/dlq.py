"""``meshgate dlq``: list, show and replay the records of a dead-letter topic.

A replay republishes the dead letter's original record, still signed by its sender, to the
base topic of the dead-letter topic, countersigned by the operator ``meshgate-operator``
(its key ``<stack>/meshgate-operator/signing-key`` is created by deploy and published in the
keyring). The tool never loads a service's key: it cannot make a service say anything. It
checks what receivers check (``bus.delivery.dlq.Replayer``) and publishes nothing when a check
fails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

from bus.delivery.dlq import DeadLetter, NotReplayable, Replayer, list_dead_letters, send_replay
from bus.envelope import now_ms
from bus.security.access import AccessPolicy
from bus.security.keys import InvalidKey, KeyRing, SigningKey, signing_key_from_bytes
from bus.transport.kafka import KafkaTransport
from infra import tui
from infra.deploy import aws as deploy
from infra.errors import InfraError
from infra.kafka.connect import operator_bus_settings
from infra.keys import identity
from infra.policy import access_map
from infra.settings import Settings

Say = Callable[[str], None]
MAX_LIST = 10_000


async def _transport(settings: Settings) -> KafkaTransport:
    """The mesh's Kafka adapter, connecting like the operator's tools (MESHGATE_KAFKA_*)."""
    return KafkaTransport(await operator_bus_settings(settings, "meshgate-dlq"))


async def _load(settings: Settings, topic: str, limit: int) -> list[DeadLetter]:
    transport = await _transport(settings)
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


OPERATOR = "meshgate-operator"


def operator_key(settings: Settings, operator: str = OPERATOR) -> SigningKey:
    """The operator's signing key, from Secrets Manager (never a service's)."""
    secrets = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, f"signing key of {operator}"):
        raw = secrets.get_secret_value(SecretId=identity.secret_name(settings, operator))
    return signing_key_from_bytes(bytes(raw["SecretBinary"]))


def published_keyring(settings: Settings) -> KeyRing:
    """The public keyring the last deploy published (``.local/identity/keyring.json``)."""
    path = settings.local_dir / "identity" / "keyring.json"
    try:
        return KeyRing.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, InvalidKey) as exc:
        raise InfraError(f"cannot read the published keyring {path}: {exc}",
                         "run 'meshgate deploy'") from exc


def replayer(settings: Settings, operator: str = OPERATOR) -> Replayer:
    access = access_map(settings.root / "policies")
    return Replayer(
        keyring=published_keyring(settings),
        access=AccessPolicy.from_dict(access["produce"], access["consume"], access["replay"]),
        operator=operator, operator_key=operator_key(settings, operator))


def replay_command(settings: Settings, topic: str, message_id: str, say: Say) -> str:
    """Replay the dead letter ``message_id`` of ``topic``; ``InfraError`` (nothing published)
    when it is refused."""
    async def run() -> str:
        transport = await _transport(settings)
        try:
            letters = await list_dead_letters(transport, topic, MAX_LIST)
            _find(letters, message_id, topic)
            how = await asyncio.to_thread(replayer, settings)
            try:
                plan = how.plan_first([d for d in letters if d.id == message_id],
                                      now_ms=now_ms())
            except NotReplayable as exc:
                raise InfraError(f"refused to replay {message_id} from {topic}: {exc.message}",
                                 "nothing was published") from exc
            return await send_replay(transport, plan)
        finally:
            await transport.close()

    replay_id = asyncio.run(run())
    say(f"replayed {message_id} from {topic} as replay {replay_id}, countersigned by {OPERATOR}")
    return replay_id
