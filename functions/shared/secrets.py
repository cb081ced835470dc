"""AWS Secrets Manager as a ``bus.security.keys.SecretSource`` (bus itself never imports AWS SDKs).

The client is created on first use (``functions.shared.aws_json.clients``: without botocore
where the environment gives the way, as in a Lambda; else botocore, which every Lambda Python
runtime ships); calls block, so async code runs them in a thread.
"""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bus.security.keys import InvalidKey
from functions.shared.aws_json.clients import aws_client
from functions.shared.dynamodb import transient


class SecretsManagerSource:
    def __init__(self, region: str | None = None, *, client: Any = None) -> None:
        self._region = region or os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION", "us-east-1")
        self._client: Any = client  # a botocore client, e.g. with timeouts; else the default

    def get(self, name: str) -> bytes:
        if self._client is None:
            self._client = aws_client("secretsmanager", {"region_name": self._region})
        try:
            secret = self._client.get_secret_value(SecretId=name)
        except (ClientError, BotoCoreError) as exc:
            error = InvalidKey(f"cannot read secret {name}: {exc}")
            error.retriable = transient(exc)  # throttled, unreachable: try again later
            raise error from exc
        if "SecretBinary" in secret:
            return bytes(secret["SecretBinary"])
        return str(secret["SecretString"]).encode()


# --- the API-key pepper ------------------------------------------------------------------

API_KEY_PEPPER_ENV = "MESH_API_KEY_PEPPER_SECRET"
MIN_PEPPER_BYTES = 16


def load_api_key_pepper(name: str | None = None, *,
                        source: SecretsManagerSource | None = None) -> bytes:
    """The pepper of API-key digests: the secret ``name`` (default: the one named by
    ``$MESH_API_KEY_PEPPER_SECRET``, ``<stack>/gateway/api-key-pepper``), at least 16 bytes.

    Blocking (an AWS call): async code runs it in a thread, once per process. Raises
    ``InvalidKey`` when it is not configured, cannot be read or is too short.
    """
    secret = name or os.environ.get(API_KEY_PEPPER_ENV)
    if not secret:
        raise InvalidKey(f"no API-key pepper configured: set {API_KEY_PEPPER_ENV}")
    pepper = (source or SecretsManagerSource()).get(secret)
    if len(pepper) < MIN_PEPPER_BYTES:
        raise InvalidKey(f"the API-key pepper {secret} is shorter than {MIN_PEPPER_BYTES} bytes")
    return pepper
