"""The partial batch response of a Kafka event source mapping (pure).

Which records to retry, as ``{"batchItemFailures": [{"itemIdentifier": ...}]}``. For Kafka the
identifier is an object naming the record's partition and offset,
``{"topic-partition": "orders.requests-3", "offset": 42}`` (the shape Powertools for AWS
Lambda returns for MSK and self-managed Kafka). Lambda honours it only when the mapping has
``FunctionResponseTypes: [ReportBatchItemFailures]`` (Kafka mappings: provisioned mode only);
otherwise a successful invocation commits the whole batch and the response is ignored, which
is why the runner never raises for a record: see docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bus.transport import Record


def item_identifier(record: Record) -> dict[str, Any]:
    return {"topic-partition": f"{record.topic}-{record.partition}", "offset": record.offset}


def batch_response(failed: Iterable[Record]) -> dict[str, Any]:
    """The response for a batch whose ``failed`` records should be delivered again, in
    (topic, partition, offset) order; an empty list means the whole batch succeeded."""
    ordered = sorted(failed, key=lambda r: (r.topic, r.partition, r.offset))
    return {"batchItemFailures": [{"itemIdentifier": item_identifier(r)} for r in ordered]}
