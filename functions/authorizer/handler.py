"""Lambda entry point of the authorizer: ``functions.authorizer.handler.handler``.

Built once per process, on the first invocation (:func:`runtime`): the JWT verifier from
``edge.jwt`` of the bundled policy (``meshgate-policy.json`` at the zip's root, or
``$MESH_POLICY_FILE``), the API-key authenticator from ``$MESH_API_KEYS_TABLE`` and the pepper
secret ``$MESH_API_KEY_PEPPER_SECRET``, and one event loop kept for warm invocations (the
JWKS cache and the DynamoDB client live on across them). Each decision is bounded by
``$MESH_AUTHORIZER_TIMEOUT_S`` (default 5 s), well inside API Gateway's 10 s authorizer limit.
"""

# ruff: noqa: E402  (the collector is paused before the imports it would slow down)
from __future__ import annotations

from functions.shared import init_gc

init_gc.pause_collection()

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bus.policy.model import Policy
from functions.authorizer.authorize import Authorizer, AuthorizerUnavailable
from functions.errors import ConfigError
from functions.gateway.auth.configured import jwt_verifier
from functions.gateway.auth.dynamodb_keys import authenticator_from_env

POLICY_BUNDLE = "meshgate-policy.json"
TIMEOUT_ENV = "MESH_AUTHORIZER_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 5.0

logging.getLogger("meshgate.authorizer").setLevel(logging.INFO)


def policy_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("MESH_POLICY_FILE")
    if explicit:
        return Path(explicit)
    return Path(env.get("LAMBDA_TASK_ROOT", ".")) / POLICY_BUNDLE


async def build_authorizer(env: Mapping[str, str]) -> Authorizer:
    """The deployment's checks: JWT if the policy has ``edge.jwt``, API keys if a table is
    configured. Raises ``RuntimeError`` when the policy cannot be read."""
    path = policy_path(env)
    try:
        policy = Policy.from_json(await asyncio.to_thread(path.read_bytes))
    except OSError as exc:
        raise ConfigError(f"the authorizer's policy {path} cannot be read ({exc})") from exc
    edge_jwt = policy.edge.jwt if policy.edge is not None else None
    return Authorizer(jwt=None if edge_jwt is None else jwt_verifier(edge_jwt),
                      api_keys=await authenticator_from_env(env))


class Runtime:
    """One process's authorizer and the event loop it runs on."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.timeout_s = float(env.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        try:
            self.authorizer = self.loop.run_until_complete(
                asyncio.wait_for(build_authorizer(env), self.timeout_s))
        except BaseException:
            self.loop.close()
            raise

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.loop.run_until_complete(
                asyncio.wait_for(self.authorizer.authorize(event), self.timeout_s))
        except TimeoutError:
            raise AuthorizerUnavailable("timeout") from None


@functools.cache
def runtime() -> Runtime:
    """The per-process runtime, created on the first invocation."""
    return Runtime(dict(os.environ))


# API Gateway only sends objects; a direct invocation with anything else (null, a list) is
# denied cleanly, never raised on (an uncaught exception restarts the process).
UNREADABLE_EVENT: dict[str, Any] = {
    "isAuthorized": False, "context": {"reason": "unreadable_event", "status": 400}}


def handler(event: object, context: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        logging.getLogger("meshgate.authorizer").warning(
            "authorizer: refused an event that is %s, not an object", type(event).__name__)
        return UNREADABLE_EVENT
    return runtime().handle(event)


init_gc.settle_for_serving()  # last: the imports frozen, the serving threshold
