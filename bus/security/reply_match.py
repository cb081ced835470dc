"""Which reply answers a call: one pure rule for every place a reply is matched.

A reply is accepted only when it is a ``reply`` or an ``error``, answers the operation that
was called (``ce_type``) and comes from the service that owns it (``ce_source``, already
verified against the signature by admission). The correlation id picks the waiter; this rule
decides whether the record may resolve it. A validly signed reply from another service that
may write to the reply topic is refused with its own reason (``unexpected_replier``), and the
waiter keeps waiting for the genuine one.

Subsets (``orders.canary.requests``) are deployments of the same service under the same
identity and key, so "the owner" covers every subset it runs: a reply carries nothing signed
that could tell the canary from the primary. A mirrored copy of a request carries a fresh
correlation id, so its reply resolves no caller.

Used by ``bus.runtime.replies.ReplyListener`` (``MeshClient``: gateway, workers' nested calls, the
Lambda request/reply path), ``functions.async_results`` and ``meshgate tail``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.envelope import KIND_ERROR, KIND_REPLY, Envelope
from bus.errors import MeshError
from bus.topics import service_of


class ReplyRefused(MeshError):
    """A signed, admitted record that may not answer the call it names."""

    code = "reply_refused"


class UnexpectedKind(ReplyRefused):
    code = "unexpected_kind"


class UnexpectedReplier(ReplyRefused):
    code = "unexpected_replier"


class UnexpectedReplyType(ReplyRefused):
    code = "unexpected_reply_type"


@dataclass(frozen=True)
class Expected:
    """What answers a call: its correlation id, its operation and the service that owns it."""

    correlation_id: str
    operation: str
    replier: str

    @classmethod
    def call(cls, correlation_id: str, operation: str, *, owner: str | None = None
             ) -> Expected:
        """The expectation of a call to ``operation``. The owner is the service of its name
        (``bus.topics.service_of``); ``owner`` is the policy's, where one is known (the policy
        check refuses an operation owned by a service of another name, so they agree)."""
        return cls(correlation_id, operation, owner or service_of(operation))


def refusal(expected: Expected, reply: Envelope) -> ReplyRefused | None:
    """None if ``reply`` answers ``expected``; else why not (the quarantine reason).

    The caller has already matched the correlation id (a reply for another caller's call is
    not refused, it is someone else's); it is checked again here so the rule is whole.
    """
    if reply.kind not in (KIND_REPLY, KIND_ERROR):
        return UnexpectedKind(f"a {reply.kind} where a reply to {expected.operation} belongs")
    if reply.correlation_id != expected.correlation_id:
        return ReplyRefused(f"reply to {reply.correlation_id!r}, not to "
                            f"{expected.correlation_id!r}")
    if reply.source != expected.replier:
        return UnexpectedReplier(f"{reply.source} answered {expected.operation}, which "
                                 f"{expected.replier} owns")
    if reply.type != expected.operation:
        return UnexpectedReplyType(f"{reply.source} answered {expected.operation} as "
                                   f"{reply.type}")
    return None
