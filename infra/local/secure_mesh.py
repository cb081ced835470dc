"""The local broker's users: each service (and the gateway) a SCRAM-SHA-512 user with its own
password (``infra.keys.kafka_scram``). ``ensure_users`` tries a login for each on the SASL_SSL
listener and creates the missing or wrong ones through the operator's connection (by default
the PLAINTEXT door, where ANONYMOUS is a super user). How they connect:
``infra.local.kafka_env``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from infra.errors import KafkaAdminFailed, ProcessFailed
from infra.kafka.connect import operator_kwargs
from infra.kafka.scram_users import retire_user, upsert_user
from infra.keys import kafka_scram
from infra.local.kafka_env import MECHANISM, ca_file
from infra.local.scram_login import LOGIN_TIMEOUT_MS, login_accepted
from infra.settings import Settings

Say = Callable[[str], None]
SETTLE_S = 10.0  # a new credential reaches the listener through the metadata log


async def _as_operator(settings: Settings, what: str,
                       change: Callable[[AIOKafkaAdminClient], Awaitable[None]]) -> None:
    """Run ``change`` on an admin connection as the operator, bounded."""
    kwargs, _ = await operator_kwargs(settings.kafka_bootstrap, settings)
    admin = AIOKafkaAdminClient(**kwargs, request_timeout_ms=LOGIN_TIMEOUT_MS)
    try:
        async with asyncio.timeout(LOGIN_TIMEOUT_MS / 1000 * 3):
            await admin.start()
            try:
                await change(admin)
            finally:
                await admin.close()
    except (KafkaError, TimeoutError) as exc:
        raise KafkaAdminFailed(f"cannot {what} on {settings.kafka_bootstrap} "
                               f"({type(exc).__name__}: {exc})",
                               "is the broker running? (localstack/kafka/kafka.sh status)",
                               retriable=True) from exc


async def create_users(settings: Settings, passwords: Mapping[str, str]) -> None:
    """Create (or reset) each user's SCRAM-SHA-512 credential, as the operator."""
    async def change(admin: AIOKafkaAdminClient) -> None:
        for user in sorted(passwords):
            await upsert_user(admin, user, passwords[user], MECHANISM)

    await _as_operator(settings, "create SCRAM users", change)


async def retire_users(settings: Settings, users: Iterable[str]) -> None:
    """Make each user's credential one nobody knows (``scram_users.retire_user``)."""
    async def change(admin: AIOKafkaAdminClient) -> None:
        for user in sorted(users):
            await retire_user(admin, user, MECHANISM)

    await _as_operator(settings, "retire SCRAM users", change)


async def refused(bootstrap: str, cafile: Path, passwords: Mapping[str, str]) -> list[str]:
    """The users whose password the SASL_SSL listener refuses, sorted."""
    users = sorted(passwords)
    async with asyncio.timeout(LOGIN_TIMEOUT_MS / 1000 * 2):
        ok = await asyncio.gather(*(login_accepted(bootstrap, cafile, u, passwords[u])
                                    for u in users))
    return [user for user, accepted in zip(users, ok, strict=True) if not accepted]


def ensure_users(settings: Settings, principals: Iterable[str], say: Say) -> list[str]:
    """Each principal a SCRAM user of the local broker with its stored password; returns the
    users created (or whose password was reset). Idempotent: a user that logs in is left."""
    passwords = kafka_scram.ensure_passwords(settings, principals, say)
    cafile = ca_file(settings)
    wrong = asyncio.run(refused(settings.secure_bootstrap, cafile, passwords))
    if not wrong:
        say(f"SCRAM users {', '.join(sorted(passwords))}: no changes")
        return []
    asyncio.run(create_users(settings, {user: passwords[user] for user in wrong}))
    deadline = time.monotonic() + SETTLE_S
    while (still := asyncio.run(refused(settings.secure_bootstrap, cafile,
                                        {u: passwords[u] for u in wrong}))):
        if time.monotonic() > deadline:
            raise ProcessFailed(f"SCRAM users {', '.join(still)} still refused {SETTLE_S:g}s "
                                "after they were created", "see .local/kafka/kafka.log")
        time.sleep(0.2)
    # Not only new users: a broker can lose credentials it had (docs/decisions.md, "SCRAM
    # credentials lost on restart"); the operator should see that they were set again.
    say(f"SCRAM users set, their logins having been refused (new, or lost by the broker): "
        f"{', '.join(wrong)}")
    return wrong


def retire_removed(settings: Settings, principals: Iterable[str], say: Say) -> list[str]:
    """The users this stack made on the local broker for principals the policy no longer
    names (a password in its secrets folder, ``admin`` aside): each retired on the broker,
    its secret and local copy removed, so a service taken out of the policy can no longer
    log in. Returns them, sorted."""
    gone = kafka_scram.stored_principals(settings) - set(principals)
    if not gone:
        return []
    asyncio.run(retire_users(settings, gone))
    for user in gone:
        kafka_scram.forget(settings, user)
    say(f"SCRAM users retired (no longer in the policy): {', '.join(sorted(gone))}")
    return sorted(gone)
