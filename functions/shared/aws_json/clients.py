"""The AWS clients of this project's functions: botocore-free where ``direct_route`` finds the
way from the environment, botocore's otherwise (``aws_client``, the one place that decides).

A direct client answers the calls a function makes on its path (Secrets Manager's
``get_secret_value``, SSM's ``get_parameter``; DynamoDB's item calls, ``dynamodb_client``)
as botocore would answer them: the same fields, binary values as
``bytes``, botocore's exceptions. Anything else (an operator's ``put_parameter``, a waiter,
``meta``) goes to a botocore client made on first use, with the same arguments.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from functions.shared.aws_json.direct_route import (
    DirectRoute,
    environment_route,
    recursion_header,
)
from functions.shared.aws_json.dynamodb_client import FastDynamoDB
from functions.shared.aws_json.json_client import (
    BOTOCORE_DEFAULTS,
    JsonClient,
    JsonService,
    Timeouts,
)
from functions.shared.aws_json.lazy_botocore import LazyBotocore

SECRETS_MANAGER: Final = JsonService("secretsmanager", "secretsmanager.",
                                     "application/x-amz-json-1.1")
SSM: Final = JsonService("ssm", "AmazonSSM.", "application/x-amz-json-1.1")


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
        self.json = JsonClient.for_route(self.service, route, timeouts, sleep=sleep)
        self._env = env
        self._botocore = LazyBotocore(fallback)

    def __getattr__(self, name: str) -> Any:
        return self._botocore.attribute(name)

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


# How each service is called directly: (route, timeouts, *, fallback, env) -> the client.
DIRECT: Final[dict[str, Callable[..., Any]]] = {
    "secretsmanager": DirectSecretsManager, "ssm": DirectSsm, "dynamodb": FastDynamoDB.direct}


def aws_client(service: str, args: Mapping[str, Any] | None = None, *,
               timeouts: Timeouts = BOTOCORE_DEFAULTS, env: Mapping[str, str] | None = None,
               wrap: Callable[[Any], Any] = lambda client: client) -> Any:
    """A client of ``service`` (a key of ``DIRECT``) for botocore's client arguments
    ``args``: the direct one when the environment gives the way, else botocore's, passed
    through ``wrap``. ``timeouts`` apply where ``args`` has no ``config``."""
    source = os.environ if env is None else env
    given = dict(args or {})
    route = environment_route(service, given, source)

    def botocore_made() -> Any:
        return botocore_client(service, botocore_args(given, timeouts))

    if route is None:
        return wrap(botocore_made())
    direct = botocore_default_timeouts(source) if timeouts == BOTOCORE_DEFAULTS else timeouts
    return DIRECT[service](route, Timeouts.of(given.get("config"), direct),
                           fallback=botocore_made, env=source)
