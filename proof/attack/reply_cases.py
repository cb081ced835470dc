"""Reply hijacks (pure: no I/O): validly signed replies to a pending call from someone who must
not answer it, written before the service that owns the operation answers.

Each hostile reply carries a token (in its body, or its error's message), so the caller's
answer says whether it was taken: a caller that took it hands the token to its user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from bus.envelope import Envelope, reply_for, to_headers
from bus.security.keys import SigningKey
from bus.security.signing import sign

HIJACK = "reply_hijack"
CATEGORIES = (HIJACK,)
RawHeaders = list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Reply:
    """One reply as its sender's raw producer writes it, on the request's reply partition."""

    label: str
    topic: str
    partition: int
    headers: RawHeaders
    value: bytes
    token: str  # found in the caller's answer if the caller took this reply


def _sealed(label: str, envelope: Envelope, request: Envelope, key: SigningKey,
            token: str) -> Reply:
    if request.reply_to is None:
        raise ValueError("a request without reply_to cannot be answered")
    signed = sign(envelope, request.reply_to.topic, key)
    return Reply(label, request.reply_to.topic, request.reply_to.partition,
                 list(to_headers(signed)), signed.value, token)


def answer(request: Envelope, source: str, key: SigningKey, body: dict[str, object], *,
           label: str, token: str, error: bool = False, operation: str | None = None
           ) -> Reply:
    """``source``'s validly signed reply (or error reply) to ``request``; ``operation``
    overrides the reply's ``ce_type``."""
    envelope = reply_for(request, source=source, value=json.dumps(body).encode(), error=error)
    if operation is not None:
        envelope = replace(envelope, type=operation)
    return _sealed(label, envelope, request, key, token)


def error_body(code: str, token: str) -> dict[str, object]:
    return {"code": code, "message": f"hijacked {token}", "retriable": False}


def mesh_hijacks(request: Envelope, *, owner: str, owner_key: SigningKey, other: str,
                 other_key: SigningKey, token: str) -> list[Reply]:
    """Another trusted service's reply and error reply, and the owner answering as another
    operation: each must be refused while the call waits for the owner's genuine answer."""
    return [
        answer(request, other, other_key, {"hijacked": f"{token}-reply"},
               label=f"{other} answers first (signed reply)", token=f"{token}-reply"),
        answer(request, other, other_key, error_body("not_found", f"{token}-error"),
               label=f"{other} answers first (signed error reply)", token=f"{token}-error",
               error=True),
        answer(request, owner, owner_key, {"hijacked": f"{token}-type"},
               label=f"{owner} answers as {owner}.other (wrong type)", token=f"{token}-type",
               operation=f"{owner}.other"),
    ]


def order_created(token: str, replier: str) -> dict[str, object]:
    """A body that passes ``orders.create``'s response schema, claiming ``replier``."""
    return {"order_id": f"hijacked-{token}", "customer": token, "total": "0.00",
            "item_count": 1, "status": "accepted", "handled_by": replier}


def taken(answer_text: str, reply: Reply) -> bool:
    """Whether the caller's answer (its body, or its error's text) came from ``reply``."""
    return reply.token in answer_text
