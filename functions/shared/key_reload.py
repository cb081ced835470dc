"""A process's mesh keys, reloaded while it runs (``bus.security.live_keys``), from where a rotation
(``meshgate keys rotate``) publishes them:

- the keyring: the SSM parameter named by ``MESH_KEYRING_PARAMETER`` (Lambdas), else the
  file of ``MESH_KEYRING_FILE`` (local workers); the deploy-time keyring
  (``MESH_KEYRING_JSON``) is only the default until the first read succeeds;
- the signing key: the Secrets Manager secret of ``MESH_SIGNING_KEY_SECRET``;
- every ``MESH_KEYRING_RELOAD_S`` seconds (default 30), and early on an unknown key id.

Workers run the reload on their loop (``start_reloading``, ended by ``stop_reloading``);
a Lambda's loop is idle between invocations, so its handler calls
``refresh_before_invocation`` first. Short timeouts; the clients are
``functions.shared.aws_json.clients``'s (without botocore where the environment allows).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bus.config import BusSettings
from bus.security.identity import Identity, load_identity
from bus.security.keys import HMAC_SHA256, InvalidKey
from bus.security.live_keys import KeyMaterial, KeyReloader, KeySourceError, LiveKeys, parse_keyring
from functions.shared.aws_json.clients import aws_client
from functions.shared.aws_json.json_client import Timeouts
from functions.shared.secrets import SecretsManagerSource

log = logging.getLogger(__name__)
PARAMETER_ENV = "MESH_KEYRING_PARAMETER"
RELOAD_ENV = "MESH_KEYRING_RELOAD_S"
DEFAULT_RELOAD_S = 30.0
AWS_TIMEOUT_S = 3.0
STOP_TIMEOUT_S = 5.0


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def _client(service: str) -> Any:
    # 3 attempts: botocore's max_attempts of 2 counts the retries
    return aws_client(service, {"region_name": _region()},
                      timeouts=Timeouts(AWS_TIMEOUT_S, AWS_TIMEOUT_S, attempts=3))


class StoreKeySource:
    """The keyring from an SSM parameter or a file; the signing secret from Secrets Manager."""

    def __init__(self, *, parameter: str | None = None, path: str | None = None,
                 secret: str | None = None) -> None:
        if (parameter is None) == (path is None):
            raise ValueError("a keyring source is an SSM parameter or a file, exactly one")
        self.parameter, self.path, self.secret = parameter, path, secret
        self._ssm: Any = None
        self._secrets: SecretsManagerSource | None = None

    def load(self) -> KeyMaterial:
        return KeyMaterial(self._keyring(), self._secret())

    def _keyring(self) -> Mapping[str, object]:
        if self.path is not None:
            try:
                return parse_keyring(Path(self.path).read_bytes())
            except OSError as exc:
                raise KeySourceError(f"cannot read the keyring {self.path}: {exc}") from exc
        if self._ssm is None:
            self._ssm = _client("ssm")
        try:
            value = self._ssm.get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except (ClientError, BotoCoreError, KeyError) as exc:
            raise KeySourceError(f"cannot read the keyring {self.parameter}: {exc}") from exc
        return parse_keyring(str(value))

    def _secret(self) -> bytes | None:
        if self.secret is None:
            return None
        if self._secrets is None:
            self._secrets = SecretsManagerSource(client=_client("secretsmanager"))
        try:
            return self._secrets.get(self.secret)
        except InvalidKey as exc:
            raise KeySourceError(str(exc)) from exc


def source_from_env(settings: BusSettings, env: Mapping[str, str]) -> StoreKeySource | None:
    """Where this process's keys are published, if anywhere."""
    parameter = env.get(PARAMETER_ENV) or None
    path = None if parameter else settings.keyring_file
    if parameter is None and path is None:
        return None
    return StoreKeySource(parameter=parameter, path=path, secret=settings.signing_key_secret)


# The reloaders of this process's identities, by service (one each), and their tasks.
_RELOADERS: dict[str, KeyReloader] = {}
_TASKS: dict[str, asyncio.Task[None]] = {}
_STOP: dict[str, asyncio.Event] = {}


def load_live_identity(settings: BusSettings, env: Mapping[str, str] | None = None
                       ) -> Identity:
    """``load_identity``, with keys that follow rotations when they are published.

    Blocking (AWS calls): run it in a thread. The published keyring is read once here, so a
    cold start after a rotation does not use the deploy-time default.
    """
    env = os.environ if env is None else env
    identity = load_identity(settings, env=env, secrets=SecretsManagerSource())
    source = source_from_env(settings, env)
    if source is None or identity.keyring is None:
        return identity
    hmac = [key for key in identity.keyring if key.algorithm == HMAC_SHA256]
    live = LiveKeys(identity.service, identity.keyring, identity.signing_key, extra=hmac)
    reloader = KeyReloader(live, source, float(env.get(RELOAD_ENV) or DEFAULT_RELOAD_S),
                           timeout_s=2 * AWS_TIMEOUT_S)
    reloader.reload_blocking()
    _RELOADERS[identity.service] = reloader
    return replace(identity, live=live)


def refresh_before_invocation() -> None:
    """Before a Lambda invocation (its loop is idle): read the keys again when due."""
    for reloader in list(_RELOADERS.values()):
        reloader.refresh_if_due()


def start_reloading() -> None:
    """On the running loop: reload every registered identity's keys until
    ``stop_reloading`` (the process's lifecycle owns the tasks)."""
    for service, reloader in _RELOADERS.items():
        if service not in _TASKS:
            stop = _STOP[service] = asyncio.Event()
            _TASKS[service] = asyncio.create_task(reloader.run(stop),
                                                  name=f"key-reloader-{service}")


async def stop_reloading() -> None:
    for stop in _STOP.values():
        stop.set()
    tasks = list(_TASKS.values())
    _TASKS.clear()
    _STOP.clear()
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("key reloader failed: %r", task.exception())
