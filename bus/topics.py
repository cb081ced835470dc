"""Topic naming: pure functions from services and operations to topics.

Until the policies (issue 4) declare routes, an operation ``svc.verb`` is served by service
``svc`` on topic ``svc.requests``.
"""

from __future__ import annotations

from bus.errors import MeshError

REPLY_TOPIC = "mesh.replies"


class BadOperationName(MeshError):
    code = "bad_operation"


def service_of(operation: str) -> str:
    service, sep, verb = operation.partition(".")
    if not sep or not service or not verb:
        raise BadOperationName(f"operation names look like 'service.verb', got {operation!r}")
    return service


def request_topic(service: str, subset: str = "") -> str:
    """``orders`` -> ``orders.requests``; subset ``canary`` -> ``orders.canary.requests``."""
    return f"{service}.{subset}.requests" if subset else f"{service}.requests"


def topic_for_operation(operation: str) -> str:
    return request_topic(service_of(operation))
