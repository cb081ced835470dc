"""Service keys and the derived keyring and access map.

Each service's Ed25519 private key lives in Secrets Manager (the emulator's, or AWS's), as
``<stack>/<service>/signing-key``; a missing one is generated. The keyring (public keys) and
the access map are public configuration derived from them and from the policies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bus.envelope import now_ms
from bus.security.keys import InvalidKey, KeyRing, generate_ed25519, signing_keys_from_bytes
from infra.deploy import aws as deploy
from infra.errors import DeployFailed
from infra.keys import key_rotation, mesh_keys
from infra.settings import Settings

Say = Callable[[str], None]


def secret_name(settings: Settings, service: str) -> str:
    return mesh_keys.secret_name(settings, service)


def ensure_keys(settings: Settings, services: list[str], say: Say) -> KeyRing:
    """Create missing signing keys in Secrets Manager; return the keyring of all of them,
    with a rotation under way kept as the live keyring has it (``infra.keys.key_rotation``)."""
    secrets = deploy.client(settings, "secretsmanager")
    live = mesh_keys.read_published(settings)
    keyring = KeyRing()
    with deploy.aws_errors(settings, "signing keys"):
        for service in services:
            name = secret_name(settings, service)
            try:
                raw = bytes(secrets.get_secret_value(SecretId=name)["SecretBinary"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                key, _ = generate_ed25519(service)
                secrets.create_secret(Name=name, SecretBinary=key.secret)
                say(f"created signing key for {service} ({key.key_id}) in {name}")
                raw = key.secret
            try:
                stored = signing_keys_from_bytes(raw)
            except InvalidKey as exc:
                raise DeployFailed(f"secret {name} is not an Ed25519 key", "delete it") from exc
            for entry, status in key_rotation.deployed_entries(service, stored, live,
                                                               now_ms()):
                keyring.add(entry, status)
    return keyring


def publish_keyring(settings: Settings, keyring: KeyRing, say: Say) -> bool:
    """Where running processes reload the keyring from (SSM, and the local workers' file)."""
    return mesh_keys.publish_keyring(settings, keyring, say)


def write_local_identity(settings: Settings, keyring: KeyRing, access: dict[str, Any]) -> Path:
    """The public parts, as files the local workers read (MESH_KEYRING_FILE, ...)."""
    folder = settings.local_dir / "identity"
    folder.mkdir(parents=True, exist_ok=True)
    mesh_keys.write_keyring_file(folder / "keyring.json", keyring)
    (folder / "access.json").write_text(json.dumps(access, indent=1))
    return folder
