"""The Java service's own identity on the broker: a SCRAM-SHA-512 user named as the service on
the local SASL_SSL listener, and the ACLs ``infra.policy.acls`` derives for it from a policy
of the test's own (so it may write its calls and read its replies, nothing else), made through
the operator's PLAINTEXT door and removed afterwards. What it yields is the Kafka client
configuration a service in another language uses (docs/interop.md, step 3)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bus.policy.model import Policy
from bus.transport.connection import KafkaSecurity
from infra.kafka import acl_admin, scram_users
from infra.local.kafka_env import MECHANISM
from infra.local.secure_mesh import SETTLE_S, refused
from infra.policy.acls import derive_acls, managed_principals

WAIT_S = 30.0
OPERATOR = KafkaSecurity()  # the PLAINTEXT door, where the operator is a super user


def client_properties(user: str, password: str, ca_file: Path) -> str:
    """The Java client's settings for the SASL_SSL listener as ``user``."""
    return "\n".join([
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={MECHANISM}",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={ca_file}",
        "",
    ])


def write_properties(path: Path, user: str, password: str, ca_file: Path) -> Path:
    if not ca_file.is_file():
        raise FileNotFoundError(f"no broker CA at {ca_file}: run '.venv/bin/meshgate up'")
    path.touch(mode=0o600)
    path.write_text(client_properties(user, password, ca_file))
    return path


@asynccontextmanager
async def broker_identity(operator_bootstrap: str, secure_bootstrap: str, policy: Policy,
                          user: str, ca_file: Path, folder: Path) -> AsyncIterator[Path]:
    """``user``'s SCRAM credential and the policy's ACLs for every service it names; yields
    the path of ``user``'s client properties (readable by this user only)."""
    password = secrets.token_hex(16)
    managed = managed_principals(policy)
    rules = derive_acls(policy)
    admin = AIOKafkaAdminClient(bootstrap_servers=operator_bootstrap)
    await asyncio.wait_for(admin.start(), WAIT_S)
    try:
        await asyncio.wait_for(scram_users.upsert_user(admin, user, password, MECHANISM), WAIT_S)
        path = write_properties(folder / f"{user}.properties", user, password, ca_file)
        # The credential reaches the listener through the metadata log: log in until it does.
        async with asyncio.timeout(SETTLE_S):
            while await refused(secure_bootstrap, ca_file, {user: password}):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        plan = await acl_admin.plan_live(operator_bootstrap, rules, managed, security=OPERATOR)
        await acl_admin.apply_live(operator_bootstrap, plan, rules, managed, security=OPERATOR)
        yield path
    finally:
        try:
            async with acl_admin.AclAdmin(operator_bootstrap, security=OPERATOR) as acls:
                await acls.delete([b for b in await acls.acls() if b.principal in managed])
        finally:
            try:
                await asyncio.wait_for(scram_users.retire_user(admin, user, MECHANISM), WAIT_S)
            finally:
                await admin.close()
