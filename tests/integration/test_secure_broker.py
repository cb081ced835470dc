"""The local broker's SCRAM users on the REAL broker and the REAL emulator (issue 13): every
service of the policy logs in on the SASL_SSL listener with the password kept in the
emulator's Secrets Manager (read the way a worker reads it), and with no other; ``meshgate
up``'s 'Kafka users' step (``infra.local.secure_mesh.ensure_users``) makes missing users,
leaves good ones alone and repairs a wrong one."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from bus.errors import KafkaAuthFailed
from bus.transport.connect_check import start_client
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs, resolve_kafka_secrets
from infra.kafka.connect import OperatorSecrets
from infra.kafka.scram_users import retire_user, upsert_user
from infra.keys import kafka_scram
from infra.local import kafka_env, secure_mesh
from infra.local import workers as local
from infra.settings import Settings

pytestmark = pytest.mark.integration
BOUND_S = 60.0  # against hanging only; no duration is asserted


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.resolve()


@pytest.fixture(scope="module")
def stack_users(settings: Settings) -> list[str]:
    """The stack's users as ``meshgate up`` leaves them (made here if this is a fresh run)."""
    if not kafka_env.ca_file(settings).is_file():
        pytest.fail(f"no local CA at {kafka_env.ca_file(settings)}: run '.venv/bin/meshgate up'")
    principals = local.kafka_principals(settings)
    secure_mesh.ensure_users(settings, principals, lambda _line: None)
    return principals


def _security(settings: Settings, user: str, *, password: str | None = None) -> KafkaSecurity:
    """What a worker of ``user`` is configured with (``infra.local.kafka_env``); with
    ``password``, that password instead of the stored secret."""
    env = kafka_env.client_environment(settings, user)
    security = KafkaSecurity.from_env(env, "MESH_KAFKA_")
    if password is not None:
        security = security.model_copy(update={"sasl_password_secret": None,
                                               "sasl_password": SecretStr(password)})
    return security


async def _describe_cluster(settings: Settings, security: KafkaSecurity) -> str:
    """Log in as a worker does (its secret read through Secrets Manager, its client started
    through ``start_client``) and ask for the cluster id."""
    async with asyncio.timeout(BOUND_S):
        resolved = await resolve_kafka_secrets(security, OperatorSecrets(settings))
        admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings.secure_bootstrap, resolved),
                                    request_timeout_ms=10_000)
        try:
            await start_client("admin", admin.start, settings.secure_bootstrap, resolved)
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
    return str(cluster["cluster_id"])


def test_every_service_logs_in_with_its_own_secret_and_no_other(
        settings: Settings, stack_users: list[str]) -> None:
    assert {"gateway", "orders", "inventory"} <= set(stack_users)
    passwords = {user: kafka_scram.password_of(
        OperatorSecrets(settings).get(kafka_env.scram_secret_name(settings.stack_name, user))
        .decode()) for user in stack_users}
    for user in stack_users:
        assert asyncio.run(_describe_cluster(settings, _security(settings, user)))
        local_copy = kafka_scram.read_local(settings, user)
        assert local_copy == passwords[user]
        assert (kafka_scram.secrets_dir(settings) / user).stat().st_mode & 0o077 == 0
        wrong = _security(settings, user, password=f"{passwords[user]}x")
        with pytest.raises(KafkaAuthFailed):
            asyncio.run(_describe_cluster(settings, wrong))
    # a service's password is no good for another service
    borrowed = _security(settings, "inventory", password=str(passwords["orders"]))
    with pytest.raises(KafkaAuthFailed):
        asyncio.run(_describe_cluster(settings, borrowed))


async def _admin_call(settings: Settings, user: str, *, password: str | None) -> None:
    """As the operator (PLAINTEXT door): set ``user``'s password, or retire the user."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=10_000)
    async with asyncio.timeout(BOUND_S):
        await admin.start()
        try:
            if password is None:
                await retire_user(admin, user)
            else:
                await upsert_user(admin, user, password)
        finally:
            await admin.close()


@pytest.fixture
def scratch(settings: Settings, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, list[str]]]:
    """A scratch stack (its own name, so its own secrets, and its own local dir with the
    broker's CA) on the real broker and emulator; its secrets and users are removed after."""
    name = f"itest-scram-{uuid.uuid4().hex[:8]}"
    tls = tmp_path / "local" / "kafka" / "tls"
    tls.mkdir(parents=True)
    shutil.copy(kafka_env.ca_file(settings), tls / "ca.pem")
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path / "local"))
    users = [f"{name}-a", f"{name}-b"]
    yield settings.model_copy(update={"stack_name": name}), users
    client = boto3.client("secretsmanager", **settings.aws_client_args())
    for user in users:
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):  # retired
            client.delete_secret(SecretId=kafka_env.scram_secret_name(name, user),
                                 ForceDeleteWithoutRecovery=True)
        asyncio.run(_admin_call(settings, user, password=None))


def test_users_are_made_once_left_alone_and_repaired(
        scratch: tuple[Settings, list[str]]) -> None:
    stack, users = scratch
    said: list[str] = []
    assert secure_mesh.ensure_users(stack, users, said.append) == sorted(users)
    for user in users:
        assert asyncio.run(_describe_cluster(stack, _security(stack, user)))
    assert secure_mesh.ensure_users(stack, users, said.append) == []  # idempotent
    assert said[-1].endswith(": no changes")
    assert not any(str(kafka_scram.read_local(stack, user)) in line  # no password in a message
                   for line in said for user in users)

    # the broker's credential changed behind our back: the stored password is set again
    asyncio.run(_admin_call(stack, users[0], password="not-the-stored-one"))
    with pytest.raises(KafkaAuthFailed):
        asyncio.run(_describe_cluster(stack, _security(stack, users[0])))
    assert secure_mesh.ensure_users(stack, users, said.append) == [users[0]]
    assert said[-1].endswith(f"logins having been refused (new, or lost by the broker): "
                             f"{users[0]}")
    assert asyncio.run(_describe_cluster(stack, _security(stack, users[0])))

    # the local copy lost: restored from Secrets Manager, the same password, nothing changed
    kept = kafka_scram.read_local(stack, users[1])
    (kafka_scram.secrets_dir(stack) / users[1]).unlink()
    assert secure_mesh.ensure_users(stack, users, said.append) == []
    assert kafka_scram.read_local(stack, users[1]) == kept


def test_a_principal_gone_from_the_policy_can_no_longer_log_in(
        scratch: tuple[Settings, list[str]]) -> None:
    stack, users = scratch
    said: list[str] = []
    secure_mesh.ensure_users(stack, users, said.append)
    gone_password = kafka_scram.read_local(stack, users[1])
    assert asyncio.run(_describe_cluster(stack, _security(stack, users[1])))
    (kafka_scram.secrets_dir(stack) / "admin").write_text("the broker's, never touched\n")

    assert secure_mesh.retire_removed(stack, users[:1], said.append) == [users[1]]
    assert said[-1] == f"SCRAM users retired (no longer in the policy): {users[1]}"
    with pytest.raises(KafkaAuthFailed):  # its password no longer logs in
        asyncio.run(_describe_cluster(stack, _security(stack, users[1],
                                                       password=str(gone_password))))
    assert kafka_scram.read_local(stack, users[1]) is None
    client = boto3.client("secretsmanager", **stack.aws_client_args())
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_secret_value(SecretId=kafka_env.scram_secret_name(stack.stack_name, users[1]))
    # the one still in the policy, and the broker's admin file, are left as they were
    assert asyncio.run(_describe_cluster(stack, _security(stack, users[0])))
    assert (kafka_scram.secrets_dir(stack) / "admin").exists()
    assert secure_mesh.retire_removed(stack, users[:1], said.append) == []  # idempotent
