"""Parking refused records on the quarantine topic, with the reason (pure header building)."""

from __future__ import annotations

from bus.envelope import now_ms
from bus.errors import MeshError
from bus.transport import Record, Transport

QUARANTINE_TOPIC = "mesh.quarantine"
H_REASON = "mesh_quarantine_reason"
H_DETAIL = "mesh_quarantine_detail"
H_ORIGINAL_TOPIC = "mesh_original_topic"
H_ORIGINAL_PARTITION = "mesh_original_partition"
H_ORIGINAL_OFFSET = "mesh_original_offset"
H_QUARANTINED_BY = "mesh_quarantined_by"
H_QUARANTINED_AT = "mesh_quarantined_at"
MAX_KEPT_HEADERS = 32
MAX_DETAIL = 512


def quarantine_record(
    record: Record, *, reason: str, detail: str, by: str, max_value_bytes: int
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers to park ``record`` with: the original, bounded, plus why."""
    headers = [(name, raw) for name, raw in list(record.headers)[:MAX_KEPT_HEADERS]
               if isinstance(name, str) and isinstance(raw, bytes)]
    headers += [
        (H_REASON, reason.encode()),
        (H_DETAIL, detail[:MAX_DETAIL].encode("utf-8", "replace")),
        (H_ORIGINAL_TOPIC, record.topic.encode()),
        (H_ORIGINAL_PARTITION, str(record.partition).encode()),
        (H_ORIGINAL_OFFSET, str(record.offset).encode()),
        (H_QUARANTINED_BY, by.encode()),
        (H_QUARANTINED_AT, str(now_ms()).encode()),
    ]
    return (record.value or b"")[:max_value_bytes], headers


async def park(
    transport: Transport, record: Record, error: MeshError, *, by: str, max_value_bytes: int
) -> None:
    """Send ``record`` to the quarantine topic with ``error``'s code as the reason."""
    value, headers = quarantine_record(
        record, reason=error.code, detail=str(error), by=by, max_value_bytes=max_value_bytes
    )
    await transport.send(QUARANTINE_TOPIC, value, headers=headers)
