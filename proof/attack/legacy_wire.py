"""The previous wire format (signature domain ``meshgate-sig-v3``), rebuilt for attacks and
test vectors only: the library no longer speaks it and must refuse it (``old_wire_format``).

v3 differed from v4 (docs/wire-format.md) in three ways: no ``ce_specversion`` header,
``ce_time`` as decimal epoch milliseconds, and signed bytes without the ``ce_specversion``
field, over that decimal ``ce_time`` and under the domain ``meshgate-sig-v3``. Pure.
"""

from __future__ import annotations

import struct
from dataclasses import replace

from bus.envelope import H_SIGNATURE, H_SPECVERSION, H_TIME, Envelope, to_headers
from bus.security.keys import SigningKey
from bus.security.signing import SignatureHeader, sign_bytes

V3_DOMAIN = b"meshgate-sig-v3"
_LENGTH = struct.Struct(">Q")


def v3_signed_bytes(envelope: Envelope, topic: str) -> bytes:
    """What a v3 sender signed for ``envelope`` on ``topic``."""
    reply_to = envelope.reply_to
    fields: tuple[tuple[str, str | bytes | None], ...] = (
        ("topic", topic), ("ce_id", envelope.id), ("ce_source", envelope.source),
        ("ce_type", envelope.type), ("ce_time", str(envelope.time_ms)),
        ("mesh_kind", envelope.kind), ("mesh_correlation_id", envelope.correlation_id),
        ("mesh_reply_to", None if reply_to is None else reply_to.encode()),
        ("mesh_deadline", None if envelope.deadline_ms is None else str(envelope.deadline_ms)),
        ("content-type", envelope.content_type), ("mesh_principal", envelope.principal),
        ("mesh_principal_sig", envelope.principal_assertion), ("value", envelope.value))
    parts = [_prefixed(V3_DOMAIN)]
    for name, content in fields:
        parts.append(_prefixed(name.encode()))
        if content is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01" + _prefixed(content if isinstance(content, bytes)
                                              else content.encode()))
    return b"".join(parts)


def v3_signature(envelope: Envelope, topic: str, key: SigningKey) -> str:
    """The ``mesh_sig`` a v3 sender wrote for ``envelope`` on ``topic``."""
    signature = sign_bytes(v3_signed_bytes(envelope, topic), key)
    return SignatureHeader(key.algorithm, key.key_id, signature).encode()


def v3_headers(envelope: Envelope, topic: str, key: SigningKey) -> list[tuple[str, bytes]]:
    """The headers a v3 sender wrote: no ``ce_specversion``, epoch-ms ``ce_time``, v3 sig."""
    headers = [(name, str(envelope.time_ms).encode() if name == H_TIME else raw)
               for name, raw in to_headers(replace(envelope, signature=None))
               if name != H_SPECVERSION]
    return [*headers, (H_SIGNATURE, v3_signature(envelope, topic, key).encode())]


def _prefixed(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data
