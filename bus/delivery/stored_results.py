"""What a worker keeps of a handled request's answer for its duplicates (pure).

The store keeps the reply's kind and value (``R`` or ``E``, then the value) and a duplicate of
the call is answered with a fresh reply carrying them. A value longer than the store keeps
(``IdempotencyStore.max_result_bytes``: a DynamoDB item holds 400 KB, a Kafka message up to
``max_message_bytes``) is answered once, as handled, and kept as ``N`` alone: the call stays
applied once, and a duplicate is answered with the error ``result_not_kept`` instead of
running the handler again (before, the completion was refused, the first answer never left,
and a retry ran the handler a second time once the claim's lease ran out).
"""

from __future__ import annotations

from typing import Final

from bus import codec
from bus.envelope import KIND_ERROR, Envelope, reply_for

REPLY: Final = b"R"
ERROR: Final = b"E"
NOT_KEPT: Final = b"N"
NOT_KEPT_CODE: Final = "result_not_kept"


def stored_result(reply: Envelope, max_bytes: int) -> bytes:
    """What to keep of ``reply`` in a store that keeps at most ``max_bytes``."""
    kept = (ERROR if reply.kind == KIND_ERROR else REPLY) + reply.value
    return kept if len(kept) <= max_bytes else NOT_KEPT


def answer_from(request: Envelope, stored: bytes, *, source: str) -> Envelope:
    """A fresh reply (new id and time) to a duplicate of ``request`` from its stored result."""
    if stored[:1] == NOT_KEPT:
        body = {"code": NOT_KEPT_CODE, "retriable": False,
                "message": "this call was handled and answered; its result was too long to "
                           "keep for repeated deliveries"}
        return reply_for(request, source=source, value=codec.encode(body), error=True)
    return reply_for(request, source=source, value=stored[1:], error=stored[:1] == ERROR)
