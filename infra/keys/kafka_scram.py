"""The SCRAM passwords of the local broker's users (one per service of the policy): kept in
Secrets Manager as ``/<stack>/kafka/scram/<service>`` (what the workers and Lambdas read,
through ``MESH_KAFKA_SASL_PASSWORD_SECRET``) and in ``<local dir>/kafka/secrets/<service>``
(0600, for local tools), made once and never logged.

The secret holds MSK's form ``{"username": ..., "password": ...}`` (what
``bus.transport.connection`` and an event source mapping both read). Secrets Manager is the
source of truth: the local file follows it; a password found in neither is generated."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from botocore.exceptions import ClientError

from infra.deploy import aws as deploy
from infra.errors import DeployFailed
from infra.local.kafka_env import scram_secret_name
from infra.settings import Settings

Say = Callable[[str], None]
PASSWORD_BYTES = 24


def secrets_dir(settings: Settings) -> Path:
    """Where the local broker script keeps ``admin`` and this module the services' passwords."""
    return settings.local_dir / "kafka" / "secrets"


def secret_document(principal: str, password: str) -> str:
    return json.dumps({"username": principal, "password": password}, sort_keys=True)


def password_of(document: str) -> str | None:
    """The password in a stored secret (MSK's JSON form, or the bare password)."""
    text = document.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        value = parsed.get("password") if isinstance(parsed, dict) else None
        return value if isinstance(value, str) and value else None
    return text or None


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by this user only, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, path)


def read_local(settings: Settings, principal: str) -> str | None:
    try:
        return (secrets_dir(settings) / principal).read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_passwords(settings: Settings, principals: Iterable[str], say: Say) -> dict[str, str]:
    """Each principal's password, made where missing: from Secrets Manager, else the local
    file (kept, so a wiped emulator does not change a password), else a new random one;
    written to whichever of the two lacks it."""
    client = deploy.client(settings, "secretsmanager")
    passwords: dict[str, str] = {}
    for principal in sorted(set(principals)):
        name = scram_secret_name(settings.stack_name, principal)
        with deploy.aws_errors(settings, f"Kafka SCRAM secret of {principal}"):
            try:
                stored = client.get_secret_value(SecretId=name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                stored = None
            if stored is not None:
                raw = stored.get("SecretString") or bytes(stored.get("SecretBinary", b"")).decode()
                password = password_of(str(raw))
                if password is None:
                    raise DeployFailed(f"secret {name} holds no SCRAM password",
                                       "delete it; the next 'meshgate up' makes a new one")
            else:
                password = read_local(settings, principal) or secrets.token_hex(PASSWORD_BYTES)
                client.create_secret(Name=name, SecretString=secret_document(principal, password),
                                     Description=f"meshgate: Kafka SCRAM-SHA-512 password of "
                                                 f"{principal} (local broker)")
                say(f"SCRAM password of {principal} in {name}")
        if read_local(settings, principal) != password:
            write_private(secrets_dir(settings) / principal, password)
        passwords[principal] = password
    return passwords


BROKER_ADMIN = "admin"  # the broker script's super user, whose password shares the folder


def stored_principals(settings: Settings) -> set[str]:
    """The principals with a password in the local secrets folder (not the broker's admin)."""
    folder = secrets_dir(settings)
    if not folder.is_dir():
        return set()
    return {path.name for path in folder.iterdir()
            if path.is_file() and not path.name.endswith(".tmp") and path.name != BROKER_ADMIN}


def forget(settings: Settings, principal: str) -> None:
    """Remove ``principal``'s password: its secret (at once, no recovery window: it names a
    retired user) and its local copy."""
    client = deploy.client(settings, "secretsmanager")
    name = scram_secret_name(settings.stack_name, principal)
    with deploy.aws_errors(settings, f"Kafka SCRAM secret of {principal}"):
        try:
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
    (secrets_dir(settings) / principal).unlink(missing_ok=True)
