"""The API-key pepper: 32 random bytes in Secrets Manager as ``<stack>/gateway/api-key-pepper``.

Created by the deploy when missing, never rotated by it (rotating the pepper invalidates every
issued key). The gateway and the authorizer read it (``functions.shared.secrets``), and so
does ``meshgate keys issue`` to digest a new key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from botocore.exceptions import ClientError

from infra.deploy import aws as deploy
from infra.errors import DeployFailed
from infra.settings import Settings

Say = Callable[[str], None]
PEPPER_BYTES = 32
MIN_PEPPER_BYTES = 16


def pepper_secret_name(settings: Settings) -> str:
    return f"{settings.stack_name}/gateway/api-key-pepper"


def ensure_pepper(settings: Settings, say: Say) -> str:
    """Create the pepper secret if it is missing; returns its name."""
    name = pepper_secret_name(settings)
    client = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, "API-key pepper"):
        try:
            current = client.get_secret_value(SecretId=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            client.create_secret(Name=name, SecretBinary=secrets.token_bytes(PEPPER_BYTES),
                                 Description="meshgate: pepper of API-key digests; rotating "
                                             "it invalidates every issued key")
            say(f"created the API-key pepper in {name}")
            return name
    raw = current.get("SecretBinary") or str(current.get("SecretString", "")).encode()
    if len(raw) < MIN_PEPPER_BYTES:
        raise DeployFailed(f"secret {name} is shorter than {MIN_PEPPER_BYTES} bytes",
                           "delete it (every issued API key then stops working) and deploy")
    return name


def read_pepper(settings: Settings) -> bytes:
    """The pepper, for operator commands (``meshgate keys issue``)."""
    name = pepper_secret_name(settings)
    client = deploy.client(settings, "secretsmanager")
    with deploy.aws_errors(settings, "API-key pepper"):
        current = client.get_secret_value(SecretId=name)
    raw = current.get("SecretBinary") or str(current.get("SecretString", "")).encode()
    return bytes(raw)
