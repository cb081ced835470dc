"""Scenario: a broker restart keeps the services' SCRAM logins, after a user was retired.

The load of ``broker_restart``, but the worker and the caller connect to the private broker's
SASL_SSL listener as SCRAM users of their own (with ACLs on their topics and groups), and
before the restart the operator makes a throwaway user and retires it, as the project's
tests and attack scenes do. The broker defers its metadata snapshots, so the restart
replays its whole metadata log: with the user deleted instead of retired, Kafka (4.1.1 to
4.4.0) would drop every SCRAM credential there and the worker and caller could not log in
again (docs/decisions.md, "SCRAM credentials lost on restart"). Afterwards the retired user
must still be refused and every request sent once the broker is back must succeed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bus.transport.connection import KafkaSecurity
from infra.kafka import acl_admin, scram_users
from infra.kafka.local_listeners import LocalListeners
from infra.local.scram_login import login_accepted
from infra.local.secure_mesh import SETTLE_S, refused
from infra.policy.acls import AclBinding
from proof.chaos.broker_restart import run_with, stop_and_start
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.stack import Private

NAME = "broker-restart-scram"
WAIT_S = 30.0
# The broker replays its whole metadata log at the restart (no snapshot in between).
BROKER_ENV = {"KAFKA_SNAPSHOT_INTERVAL_MS": "3600000"}


def java_bucket(name: str, capacity: int = 16) -> int:
    """The bucket of ``name`` in a java.util.HashMap of ``capacity``: the order in which
    Kafka's ``ScramDelta.apply`` visits the users of a replayed log."""
    h = 0
    for char in name:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & (capacity - 1)


def visited_first(prefix: str) -> str:
    """A name starting with ``prefix`` in a HashMap's first bucket: a replay visits it before
    every other user, provided it was made before any other user of that bucket (a bucket
    keeps its entries in insertion order). No name can be in a lower bucket than another
    random name's 0, so callers make this user first rather than compare buckets."""
    return next(name for n in range(10_000) if java_bucket(name := f"{prefix}{n}") == 0)


def listeners_of(broker: Private) -> LocalListeners:
    """A private broker's listeners, as ``kafka.sh`` lays them out (SASL_SSL on port + 2)."""
    port, state = int(broker.env["KAFKA_PORT"]), Path(broker.env["KAFKA_STATE_DIR"])
    return LocalListeners(plaintext=broker.address, secure=f"127.0.0.1:{port + 2}",
                          mtls=f"127.0.0.1:{port + 3}", tls_dir=state / "tls",
                          secrets_dir=state / "secrets")


def _grants(user: str) -> list[AclBinding]:
    principal = f"User:{user}"
    return [AclBinding(principal, kind, "*", "LITERAL", "ALL") for kind in ("TOPIC", "GROUP")]


@dataclass(frozen=True)
class ScramScene:
    """The SCRAM users of a run on a private broker: their connection settings, and a user
    made and retired before the restart, whose old password must stay refused."""

    listeners: LocalListeners
    security: dict[str, KafkaSecurity]
    retired: tuple[str, str]

    @property
    def address(self) -> str:
        return self.listeners.secure

    async def problems(self) -> list[str]:
        user, password = self.retired
        if await login_accepted(self.address, self.listeners.ca_file, user, password):
            return [f"the retired user {user} still logs in with its old password"]
        return []


async def scram_users_for(broker: Private, users: Iterable[str]) -> ScramScene:
    """Each of ``users`` a SCRAM user with a random password and every right on topics and
    groups, made through the operator's PLAINTEXT door; one more user, visited before them
    all in a replay, made and retired."""
    listeners = listeners_of(broker)
    passwords = {user: secrets.token_hex(16) for user in users}
    retired = (visited_first("chaosretired"), secrets.token_hex(16))
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        for user, password in (retired, *passwords.items()):  # the retired one first
            await asyncio.wait_for(scram_users.upsert_user(admin, user, password), WAIT_S)
        await asyncio.wait_for(scram_users.retire_user(admin, retired[0]), WAIT_S)
    finally:
        await admin.close()
    async with acl_admin.AclAdmin(broker.address, security=KafkaSecurity()) as acls:
        await acls.create([b for user in passwords for b in _grants(user)])
    async with asyncio.timeout(SETTLE_S):  # a new credential reaches the listener later
        while await refused(listeners.secure, listeners.ca_file, passwords):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return ScramScene(listeners, {user: listeners.scram(user, password)
                                  for user, password in passwords.items()}, retired)


async def run(ctx: Context) -> ScenarioResult:
    return await run_with(ctx, NAME, stop_and_start, scram=scram_users_for,
                          broker_env=BROKER_ENV)
