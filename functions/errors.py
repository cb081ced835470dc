"""The one error hierarchy of ``functions``: every error says its ``code`` and whether
retrying may succeed (``retriable``).

``FunctionError`` subclasses ``bus.errors.MeshError`` (functions import bus; bus never
imports functions): the runners and retry loops of bus, which decide on ``MeshError`` and
its ``retriable`` flag, then treat a store's error raised inside a handler or an intake the
same way as their own, and one ``except MeshError`` covers both families. The edge keeps
its own mapping: ``AuthError`` and ``EdgeRefusal`` have their own exception handlers, which
Starlette picks before the ``MeshError`` one (the most derived class wins).

The families (each defined beside its adapter, all descending from here):

- the edge's refusals (``functions.gateway.problems.EdgeRefusal``, ``BodyTooLarge``);
- authentication (``functions.gateway.auth.errors.AuthError``: 401/403/503, the key set,
  the API-key store) and the authorizer's (``AuthorizerUnavailable``);
- the stores: rate limits and quotas (``RateLimitError``, ``DailyQuotaExceeded``), async
  operations (``OperationsError``), DynamoDB's lost condition (``ConditionFailed``);
- configuration (``OtelConfigError``).

Adapters translate botocore/urllib/OS errors into these at their edge: throttling,
timeouts and connection errors are retriable; validation and access denied are not.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bus.errors import MeshError

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class FunctionError(MeshError):
    """Base of every error ``functions`` raises on purpose. ``code`` is unique per class
    (its own when it names one, else its name in snake case, so none goes without);
    ``retriable`` is a class default an instance may override."""

    code: ClassVar[str] = "function_error"
    retriable: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = _CAMEL.sub("_", cls.__name__).lower()


class ConfigError(FunctionError, RuntimeError):
    """A function cannot start: its deployed configuration (the policy file, a required
    setting) is missing or unreadable. A loud cold start, not retriable. Still a
    ``RuntimeError`` for callers that knew it as one."""

    code = "config_error"
