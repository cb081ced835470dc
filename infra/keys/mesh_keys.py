"""The stores of the mesh keys (the adapter of ``infra.keys.key_rotation``): each service's
signing secret in Secrets Manager and the live keyring, an SSM parameter that running
functions reload (``infra.stack.function_env.keyring_parameter``) mirrored into the local workers'
``.local/identity/keyring.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import ClientError

from bus.security.keys import (
    InvalidKey,
    KeyRing,
    SecretKeys,
    secret_document,
    signing_keys_from_bytes,
)
from infra.deploy import aws as deploy
from infra.errors import DeployFailed, InfraError
from infra.settings import Settings
from infra.stack import function_env

Say = Callable[[str], None]


def secret_name(settings: Settings, service: str) -> str:
    return f"{settings.stack_name}/{service}/signing-key"


def keyring_file(settings: Settings) -> Path:
    return settings.local_dir / "identity" / "keyring.json"


def read_secret(settings: Settings, service: str) -> SecretKeys:
    name = secret_name(settings, service)
    secrets = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, f"signing key of {service}"):
        raw = bytes(secrets.get_secret_value(SecretId=name)["SecretBinary"])
    try:
        return signing_keys_from_bytes(raw)
    except InvalidKey as exc:
        raise DeployFailed(f"secret {name} holds no usable Ed25519 key ({exc})",
                           "restore it, or delete it and deploy again") from exc


def write_secret(settings: Settings, service: str, keys: SecretKeys) -> None:
    secrets = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, f"signing key of {service}"):
        secrets.put_secret_value(SecretId=secret_name(settings, service),
                                 SecretBinary=secret_document(keys))


def read_published(settings: Settings) -> KeyRing | None:
    """The live keyring, or None before the first deploy that publishes it."""
    ssm = deploy.client(settings, "ssm")
    with deploy.aws_errors(settings, "keyring"):
        try:
            value = ssm.get_parameter(Name=function_env.keyring_parameter(settings))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise
    try:
        return KeyRing.from_dict(json.loads(value["Parameter"]["Value"]))
    except (InvalidKey, json.JSONDecodeError, AttributeError) as exc:
        raise InfraError(f"the keyring {function_env.keyring_parameter(settings)} is unreadable "
                         f"({exc})", "run 'meshgate deploy' to publish it again") from exc


def require_published(settings: Settings) -> KeyRing:
    ring = read_published(settings)
    if ring is None:
        raise InfraError(f"stack {settings.stack_name} has no live keyring "
                         f"({function_env.keyring_parameter(settings)})",
                         "deploy it first with 'meshgate deploy'")
    return ring


def document(keyring: KeyRing) -> str:
    """Compact: a standard SSM parameter holds 4 KB (about 25 keys)."""
    return json.dumps(keyring.to_dict(), separators=(",", ":"), sort_keys=True)


def write_keyring_file(path: Path, keyring: KeyRing) -> None:
    """Replace the file in one step: a worker reading it never sees half a keyring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(keyring.to_dict(), indent=1, sort_keys=True))
    os.replace(scratch, path)


def publish_keyring(settings: Settings, keyring: KeyRing, say: Say) -> bool:
    """Write the live keyring (SSM, and the local workers' file); True when it changed."""
    name = function_env.keyring_parameter(settings)
    text = document(keyring)
    ssm = deploy.client(settings, "ssm")
    with deploy.aws_errors(settings, "keyring"):
        try:
            current: str | None = str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise
            current = None
        if current != text:
            ssm.put_parameter(Name=name, Value=text, Type="String", Overwrite=True)
    local = keyring_file(settings)
    if local.parent.is_dir():
        write_keyring_file(local, keyring)
    if current != text:
        say(f"keyring {name}: published ({len(keyring)} keys)")
    return current != text
