"""The one error hierarchy of gateway authentication.

Every error carries the HTTP ``status`` it maps to and a short machine-readable ``reason``:

- 401: the credentials are missing, malformed or invalid (the caller should authenticate
  again);
- 403: the credentials are valid but not allowed (a revoked key, a used-up quota);
- 503: the gateway could not check the credentials (the key set could not be fetched).

Messages are written for the caller and never echo a token, a key or a claim value.
"""

from __future__ import annotations

from typing import Any, ClassVar

from functions.errors import FunctionError


class AuthError(FunctionError):
    """Base of every error raised by ``functions.gateway.auth``.

    ``status`` and ``reason`` are class defaults that an instance may override (an invalid
    token says which check failed). A class's ``code`` is the ``reason`` it sets, else its
    name in snake case; a 503 (the credentials could not be checked) is retriable.
    """

    status: int = 401
    reason: str = "unauthenticated"
    code = "unauthenticated"
    scheme: ClassVar[str | None] = None  # the ``WWW-Authenticate`` scheme of a 401, if any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "code" not in cls.__dict__ and "reason" in cls.__dict__:
            cls.code = cls.reason
        super().__init_subclass__(**kwargs)  # else the class name (FunctionError)

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` value a 401 answer should carry (RFC 6750), if any."""
        if self.status != 401 or self.scheme is None:
            return None
        if isinstance(self, MissingCredentials):
            return self.scheme
        return f'{self.scheme} error="invalid_token"'

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class MissingCredentials(AuthError):
    """No credentials were presented (no ``Authorization`` or ``x-api-key`` header)."""

    reason = "missing_credentials"


class MalformedCredentials(AuthError):
    """Credentials were presented but cannot be parsed (wrong scheme, not a JWT, bad key)."""

    reason = "malformed_credentials"


class InvalidToken(AuthError):
    """A bearer token that parses but fails a check (signature, algorithm, time, issuer...)."""

    reason = "invalid_token"
    scheme = "Bearer"


class MissingBearer(MissingCredentials):
    """No ``Authorization: Bearer`` header."""

    scheme = "Bearer"


class MalformedBearer(MalformedCredentials):
    """An ``Authorization`` header that is not ``Bearer <compact JWT>``."""

    scheme = "Bearer"


class UnknownKey(InvalidToken):
    """The token names a key id the key set does not have, even after a refresh."""

    reason = "unknown_key"


class InvalidApiKey(AuthError):
    """An API key that is not known to the store (or does not match its stored digest)."""

    reason = "invalid_api_key"


class Forbidden(AuthError):
    """Valid credentials that are not allowed to make the call."""

    status = 403
    reason = "forbidden"


class RevokedKey(Forbidden):
    """A known API key that has been revoked."""

    reason = "revoked_api_key"


class QuotaExceeded(Forbidden):
    """A known API key whose usage plan's daily quota is used up."""

    reason = "quota_exceeded"


class KeySetUnavailable(AuthError):
    """The JWKS could not be fetched or parsed and no usable cached copy exists.

    Not the caller's fault: 503, so that clients retry instead of dropping their token.
    """

    status = 503
    reason = "jwks_unavailable"
    retriable = True
