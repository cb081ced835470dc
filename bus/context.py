"""The message being handled, so that calls made inside a handler inherit its deadline and
trace without passing them by hand."""

from __future__ import annotations

from contextvars import ContextVar

from bus.envelope import Envelope

current_message: ContextVar[Envelope | None] = ContextVar("mesh_current_message", default=None)


def inherited_deadline_ms(own_deadline_ms: int) -> int:
    """A nested call never outlives the call that caused it."""
    parent = current_message.get()
    if parent is None or parent.deadline_ms is None:
        return own_deadline_ms
    return min(own_deadline_ms, parent.deadline_ms)
