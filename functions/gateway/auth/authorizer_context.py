"""The caller established by the Lambda authorizer (``functions/authorizer``), read back from
the API Gateway v2 event the gateway receives behind it.

With a simple-response Lambda authorizer, API Gateway copies the authorizer's ``context``
into ``requestContext.authorizer.lambda`` of the integration's event; the authorizer puts the
principal there as JSON under :data:`PRINCIPAL_CONTEXT_KEY`. Only a gateway deployed behind
the authorizer may trust it (``MESH_TRUST_AUTHORIZER=1``, set by ``infra.stack.parts.auth
.with_authorizer``): anyone who can invoke the function directly can write that field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from functions.gateway.auth.principal import Principal

PRINCIPAL_CONTEXT_KEY = "principal"
PLAN_CONTEXT_KEY = "plan"  # the API key's usage plan as JSON (API keys only)
TRUST_AUTHORIZER_ENV = "MESH_TRUST_AUTHORIZER"


def authorizer_context(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``requestContext.authorizer.lambda`` of an API Gateway v2 event, if there is one."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    found = authorizer.get("lambda") if isinstance(authorizer, Mapping) else None
    return found if isinstance(found, Mapping) else None


def principal_from_authorizer(event: Mapping[str, Any]) -> Principal | None:
    """The principal the authorizer established, or ``None`` when the event carries none.

    Raises ``ValueError`` when it is there but malformed: that is a deployment fault (the
    authorizer and the gateway disagree), never the caller's, so answer 500, not 401.
    """
    context = authorizer_context(event)
    if context is None or PRINCIPAL_CONTEXT_KEY not in context:
        return None
    raw = context[PRINCIPAL_CONTEXT_KEY]
    if isinstance(raw, Mapping):  # tolerate a context that was already decoded
        return Principal.from_dict(raw)
    if not isinstance(raw, str):
        raise ValueError("the authorizer's principal is neither JSON text nor an object")
    return Principal.from_json(raw)


def plan_from_authorizer(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The API key's usage plan (``rate_per_s``, ``burst``, ``daily_quota``) the authorizer
    passed along, or ``None``; raises ``ValueError`` when it is malformed."""
    context = authorizer_context(event)
    raw = None if context is None else context.get(PLAN_CONTEXT_KEY)
    if raw is None:
        return None
    plan = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(plan, dict):
        raise ValueError("the authorizer's plan is not a JSON object")
    return plan
