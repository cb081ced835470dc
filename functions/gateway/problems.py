"""Every error answer of the edge is RFC 9457 problem+json: what went wrong for the caller,
never the internals (no stack, topic, key or token).

``EdgeRefusal`` is the one error type the edge raises itself (bad input, limits); auth errors
(``functions.gateway.auth``) and mesh errors (``bus.errors``) are mapped here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

from bus.errors import DeadlineExceeded, MeshError, RemoteError, TransportError
from bus.security.access import NotAllowed
from bus.traffic.breaker import CircuitOpen
from bus.traffic.faults import InjectedFault
from functions.errors import FunctionError
from functions.gateway.auth.errors import AuthError

PROBLEM_JSON = "application/problem+json"
API_KEY_CHALLENGE = 'ApiKey realm="meshgate", header="x-api-key"'
TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class EdgeRefusal(FunctionError):
    """The edge refuses a request itself: ``status``, a machine ``reason``, a ``detail`` for
    the caller, and for 422 the list of ``errors`` (JSON pointer + message). Retriable when
    the status says so (429, 503)."""

    code = "edge_refusal"

    def __init__(self, status: int, reason: str, detail: str, *,
                 errors: Sequence[Mapping[str, str]] = (),
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.retriable = status in (429, 503)


def problem(status: int, detail: str, *, reason: str | None = None,
            headers: Mapping[str, str] | None = None,
            extra: Mapping[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"),
                            "status": status, "detail": detail}
    if reason is not None:
        body["reason"] = reason
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers=dict(headers or {}))


def refusal_response(refusal: EdgeRefusal) -> JSONResponse:
    extra = {"errors": refusal.errors} if refusal.errors else None
    return problem(refusal.status, refusal.detail, reason=refusal.reason,
                   headers=refusal.headers, extra=extra)


def auth_error_response(error: AuthError) -> JSONResponse:
    headers = {}
    challenge = error.www_authenticate()
    if challenge is None and error.status == 401:
        challenge = API_KEY_CHALLENGE  # RFC 9110: a 401 always names a way to authenticate
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    return problem(error.status, error.message, reason=error.reason, headers=headers)


def mesh_error_status(error: MeshError) -> tuple[int, str, str]:
    """(status, reason, detail) for a mesh error: timeout 504, unavailable 503, refused
    403, invalid input 422, not found 404, anything else from the service 502."""
    if isinstance(error, DeadlineExceeded):
        return 504, "timeout", "the service did not answer in time"
    if isinstance(error, InjectedFault | CircuitOpen):
        return 503, "unavailable", "the service is not taking calls now"
    if isinstance(error, TransportError):
        return 503, "unavailable", "the message bus is unavailable"
    if isinstance(error, NotAllowed):
        return 403, "not_allowed", "the edge may not call this operation"
    if isinstance(error, RemoteError):
        code = error.remote_code
        if code.startswith("invalid") or code.startswith("insufficient"):
            return 422, code, error.message
        if code in ("not_found", "unknown_operation") or code.endswith("_not_found"):
            return 404, code, error.message if code == "not_found" else "not found"
        if code in ("forbidden", "not_allowed"):
            return 403, code, "the service refused the call"
        if error.remote_retriable:
            return 503, "unavailable", f"the service answered {code}; try again later"
        return 502, "bad_gateway", f"the service answered {code}"
    return 502, "bad_gateway", "the request could not be completed"


def retry_after_s(error: MeshError) -> int:
    """Seconds a 503 asks the caller to wait: until an open circuit lets trial calls through
    again (rounded up), else 1."""
    if isinstance(error, CircuitOpen):
        return max(1, -(-error.retry_after_ms // 1000))
    return 1


def mesh_error_response(error: MeshError) -> JSONResponse:
    status, reason, detail = mesh_error_status(error)
    headers = {"Retry-After": str(retry_after_s(error))} if status == 503 else None
    return problem(status, detail, reason=reason, headers=headers)
