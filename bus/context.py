"""The message being handled, so that calls made inside a handler inherit its deadline and
trace without passing them by hand; and the client of the worker running the handler, so that
a handler makes nested calls with ``mesh_client().request(...)``."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from bus.envelope import Envelope
from bus.errors import NoMeshClient

if TYPE_CHECKING:
    from bus.runtime.client import MeshClient

current_message: ContextVar[Envelope | None] = ContextVar("mesh_current_message", default=None)
current_client: ContextVar[MeshClient | None] = ContextVar("mesh_current_client", default=None)


def mesh_client() -> MeshClient:
    """Inside a handler: the mesh client of the worker running it (``ServiceWorker(client=)``),
    signed as the handler's service. Calls made with it inherit the handled message's deadline,
    trace and principal. ``NoMeshClient`` when the worker was given none."""
    client = current_client.get()
    if client is None:
        raise NoMeshClient("this worker makes no nested calls: give ServiceWorker a client")
    return client


def inherited_deadline_ms(own_deadline_ms: int) -> int:
    """A nested call never outlives the call that caused it."""
    parent = current_message.get()
    if parent is None or parent.deadline_ms is None:
        return own_deadline_ms
    return min(own_deadline_ms, parent.deadline_ms)


def inherited_principal() -> tuple[str | None, str | None]:
    """The handled message's principal and the edge's assertion of it (``None, None``
    outside a handler): a nested call forwards both unchanged, so its receiver, which never
    saw the edge's message, can check that an edge vouched for the principal
    (``bus.security.principals``)."""
    parent = current_message.get()
    return (None, None) if parent is None else (parent.principal, parent.principal_assertion)


def caller_principal() -> dict[str, object] | None:
    """Inside a handler: who the call is made for, as the edge established it (``sub``,
    ``method``, ``iss``, ``scopes``, ``claims``, ``key_id``), or ``None`` for calls that no
    authenticated caller started. It is covered by the sender's signature."""
    import json  # only handlers that authorize pay for it

    message = current_message.get()
    if message is None or message.principal is None:
        return None
    try:
        data = json.loads(message.principal)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
