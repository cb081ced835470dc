"""The AWS clients of this project's functions: botocore-free where ``direct_route`` finds the
way from the environment, botocore's otherwise, created only when first used.

A direct client answers the calls a function makes on its path (Secrets Manager's
``get_secret_value``, SSM's ``get_parameter``; DynamoDB's item calls live in
``dynamodb_client``) as botocore would answer them: the same fields, binary values as
``bytes``, botocore's exceptions. Anything else (an operator's ``put_parameter``, a waiter,
``meta``) goes to a botocore client made on first use, with the same arguments.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from functions.shared.aws_json.direct_route import (
    DirectRoute,
    default_ca_file,
    environment_route,
    recursion_header,
)
from functions.shared.aws_json.json_client import (
    JsonClient,
    JsonService,
    Timeouts,
    static_credentials,
)

SECRETS_MANAGER: Final = JsonService("secretsmanager", "secretsmanager.",
                                     "application/x-amz-json-1.1")
SSM: Final = JsonService("ssm", "AmazonSSM.", "application/x-amz-json-1.1")
# botocore's own defaults (a client made without a Config): 60 s timeouts, standard retries
# (the installed botocore's default mode; a unit test checks them against its client).
BOTOCORE_DEFAULTS: Final = Timeouts(connect_s=60.0, read_s=60.0, attempts=3)


def botocore_default_timeouts(env: Mapping[str, str]) -> Timeouts:
    """What botocore gives a client made without a ``Config``: 60 s timeouts, and the total
    attempts of ``AWS_MAX_ATTEMPTS``, else of ``AWS_RETRY_MODE`` (standard, the default, and
    adaptive 3; legacy 5)."""
    configured = env.get("AWS_MAX_ATTEMPTS", "").strip()
    if configured:
        attempts = int(configured)  # not a number: a ValueError, as botocore raises
    else:
        mode = env.get("AWS_RETRY_MODE", "standard").strip().lower()
        attempts = 5 if mode == "legacy" else 3
    return Timeouts(BOTOCORE_DEFAULTS.connect_s, BOTOCORE_DEFAULTS.read_s, attempts)


def botocore_client(service: str, args: Mapping[str, Any]) -> Any:
    """A botocore client, botocore imported here (it is the cold start's largest import)."""
    import botocore.session

    return botocore.session.get_session().create_client(service, **args)


def botocore_config(timeouts: Timeouts) -> Any:
    """``timeouts`` as the botocore ``Config`` of a client made without a direct route."""
    from botocore.config import Config

    return Config(connect_timeout=timeouts.connect_s, read_timeout=timeouts.read_s,
                  retries={"mode": "standard", "total_max_attempts": timeouts.attempts})


def botocore_args(args: Mapping[str, Any], timeouts: Timeouts) -> dict[str, Any]:
    """``args`` with ``timeouts`` as their ``config`` when they have none (botocore's own
    defaults need none)."""
    if "config" in args or timeouts == BOTOCORE_DEFAULTS:
        return dict(args)
    return {**args, "config": botocore_config(timeouts)}


class DirectClient:
    """The base of the direct clients: one ``JsonClient``, and the botocore client for every
    other attribute (made once, on first use; thread-safe)."""

    service: JsonService

    def __init__(self, route: DirectRoute, timeouts: Timeouts, *,
                 fallback: Callable[[], Any], env: Mapping[str, str],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.route = route
        self.json = JsonClient(self.service, endpoint_url=route.endpoint_url,
                               region=route.region,
                               credentials=static_credentials(route.credentials),
                               timeouts=timeouts, ca_file=lambda: default_ca_file(route),
                               sleep=sleep)
        self._env = env
        self._fallback = fallback
        self._botocore: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never botocore's privates, nor ours before __init__ ends
            raise AttributeError(name)
        with self._lock:
            if self._botocore is None:
                self._botocore = self._fallback()
        return getattr(self._botocore, name)

    def _call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(params, separators=(",", ":")).encode()
        return self.json.call(operation, body, recursion_header(self._env))


class DirectSecretsManager(DirectClient):
    service = SECRETS_MANAGER

    def get_secret_value(self, **params: Any) -> dict[str, Any]:
        answer = self._call("GetSecretValue", params)
        if "SecretBinary" in answer:  # a blob: base64 on the wire, bytes from botocore
            answer["SecretBinary"] = base64.b64decode(answer["SecretBinary"], validate=True)
        return answer


class DirectSsm(DirectClient):
    service = SSM

    def get_parameter(self, **params: Any) -> dict[str, Any]:
        return self._call("GetParameter", params)


DIRECT: Final[dict[str, type[DirectClient]]] = {
    "secretsmanager": DirectSecretsManager, "ssm": DirectSsm}


def aws_client(service: str, args: Mapping[str, Any] | None = None, *,
               timeouts: Timeouts = BOTOCORE_DEFAULTS, env: Mapping[str, str] | None = None,
               ) -> Any:
    """A client of ``service`` (``secretsmanager`` or ``ssm``) for botocore's client
    arguments ``args``: the direct one when the environment gives the way, else botocore's.
    ``timeouts`` apply where ``args`` has no ``config``."""
    source = os.environ if env is None else env
    given = dict(args or {})
    route = environment_route(service, given, source)

    def botocore_made() -> Any:
        return botocore_client(service, botocore_args(given, timeouts))

    if route is None:
        return botocore_made()
    direct = botocore_default_timeouts(source) if timeouts == BOTOCORE_DEFAULTS else timeouts
    return DIRECT[service](route, Timeouts.of(given.get("config"), direct),
                           fallback=botocore_made, env=source)
