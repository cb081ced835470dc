"""The authorizer's decision for one API Gateway v2 REQUEST authorizer event (no AWS here:
the checks are injected, so the same code runs in tests with in-memory stores).

- ``Authorization`` present: a JWT bearer (``JwtVerifier``); ``x-api-key`` present: an API
  key (``ApiKeyAuthenticator``); both: refused as ambiguous; neither: allowed as anonymous
  (no principal in the context), so routes with ``auth: none`` stay reachable and the
  gateway answers 401 itself on routes that need credentials.
- Allowed: ``{"isAuthorized": true, "context": {"principal": <Principal JSON>, ...}}``; the
  gateway reads it back with ``principal_from_authorizer``.
- Refused (401/403 causes): ``{"isAuthorized": false, "context": {"reason": ...}}``; API
  Gateway answers 403 and drops the context, which only the logs and tests see.
- The checks could not be made (key set or key store down, status 503):
  :class:`AuthorizerUnavailable` is raised, so API Gateway answers 500 rather than a 403
  that would tell a client its valid credentials are bad.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.errors import FunctionError
from functions.gateway.auth.api_keys import API_KEY_HEADER, ApiKeyAuthenticator
from functions.gateway.auth.authorizer_context import PLAN_CONTEXT_KEY, PRINCIPAL_CONTEXT_KEY
from functions.gateway.auth.errors import AuthError, MalformedCredentials
from functions.gateway.auth.jwt_bearer import JwtVerifier
from functions.gateway.auth.principal import Principal

log = logging.getLogger("meshgate.authorizer")
AUTHORIZATION_HEADER = "authorization"


class AuthorizerUnavailable(FunctionError):
    """The credentials could not be checked (a dependency is down); retriable."""

    code = "authorizer_unavailable"
    retriable = True

    def __init__(self, reason: str) -> None:
        super().__init__(f"the credentials could not be checked: {reason}")
        self.reason = reason


def headers_of(event: Mapping[str, Any]) -> dict[str, str]:
    """The request headers, names lower-cased (API Gateway v2 already does; REST v1 not)."""
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return {}
    return {str(name).lower(): str(value) for name, value in headers.items()
            if isinstance(value, str)}


def allow(principal: Principal, plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {PRINCIPAL_CONTEXT_KEY: principal.to_json(),
                               "sub": principal.subject, "method": principal.method}
    if principal.key_id is not None:
        context["key_id"] = principal.key_id
    if plan is not None:
        context[PLAN_CONTEXT_KEY] = json.dumps(dict(plan), sort_keys=True,
                                               separators=(",", ":"))
    return {"isAuthorized": True, "context": context}


# No credentials at all: let the request through without a principal; the gateway, which
# knows each route's auth, refuses it where credentials are needed.
ANONYMOUS: dict[str, Any] = {"isAuthorized": True, "context": {"anonymous": "true"}}


def deny(error: AuthError) -> dict[str, Any]:
    return {"isAuthorized": False,
            "context": {"reason": error.reason, "status": error.status}}


@dataclass(frozen=True)
class Authorizer:
    """The checks this deployment offers (``None``: that kind of credential is refused)."""

    jwt: JwtVerifier | None
    api_keys: ApiKeyAuthenticator | None

    async def authorize(self, event: Mapping[str, Any]) -> dict[str, Any]:
        headers = headers_of(event)
        try:
            return await self._check(headers)
        except AuthError as error:
            if error.status >= 500:
                log.error("authorizer: cannot check credentials: %s", error.reason)
                raise AuthorizerUnavailable(error.reason) from None
            log.info("authorizer: refused: %s", error.reason)
            return deny(error)

    async def _check(self, headers: Mapping[str, str]) -> dict[str, Any]:
        bearer, api_key = headers.get(AUTHORIZATION_HEADER), headers.get(API_KEY_HEADER)
        if bearer is not None and api_key is not None:
            raise MalformedCredentials("present either a bearer token or an API key, not both",
                                       reason="ambiguous_credentials")
        if api_key is not None:
            if self.api_keys is None:
                raise MalformedCredentials("API keys are not accepted here",
                                           reason="api_keys_not_accepted")
            match = await self.api_keys.authenticate(api_key)
            plan = match.record.plan
            return allow(match.principal, {"rate_per_s": plan.rate_per_s,
                                           "burst": plan.burst,
                                           "daily_quota": plan.daily_quota})
        if bearer is not None:
            if self.jwt is None:
                raise MalformedCredentials("bearer tokens are not accepted here",
                                           reason="jwt_not_accepted")
            return allow(await self.jwt.authenticate(bearer))
        return ANONYMOUS
