"""The OpenTelemetry variables given to the deployed gateway and the local workers (pure).

Locally (the emulator) every process exports traces over OTLP/HTTP to the local collector
(``infra.local.collector``, started by ``meshgate up``); the long-lived workers also export their
metrics every few seconds (``metrics=True``). The gateway Lambda does not: it flushes at the
end of every invocation, and a metrics export there would cost one more POST per request.
On AWS nothing is set unless the operator deploys with ``MESHGATE_OTEL_*`` variables, which
are handed on without the ``MESHGATE_`` prefix (e.g.
``MESHGATE_OTEL_EXPORTER_OTLP_ENDPOINT=https://collector:4318``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from infra.settings import Settings

COLLECTOR_HOST: Final = "127.0.0.1"
FORWARDED_PREFIX: Final = "MESHGATE_OTEL_"
SPANS_FILE: Final = "spans.jsonl"
METRICS_FILE: Final = "metrics.jsonl"


def collector_endpoint(settings: Settings) -> str:
    """The local collector of this stack (``MESHGATE_COLLECTOR_PORT``, default 4318)."""
    return f"http://{COLLECTOR_HOST}:{settings.collector_port}"


def telemetry_dir(settings: Settings) -> Path:
    """Where the local collector writes ``spans.jsonl`` and ``metrics.jsonl``."""
    return settings.local_dir / "telemetry"


METRIC_EXPORT_INTERVAL_MS: Final = 5_000


def otel_environment(settings: Settings, service: str,
                     env: Mapping[str, str] | None = None, *,
                     metrics: bool = False) -> dict[str, str]:
    """``OTEL_*`` variables of ``service``'s process (see the module doc)."""
    if not settings.is_local:
        source = os.environ if env is None else env
        forwarded = {name.removeprefix("MESHGATE_"): value for name, value in source.items()
                     if name.startswith(FORWARDED_PREFIX)}
        if forwarded:
            forwarded.setdefault("OTEL_SERVICE_NAME", service)
        return dict(sorted(forwarded.items()))
    return {
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment.name=local,"
                                    f"meshgate.stack={settings.stack_name}",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp" if metrics else "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_endpoint(settings),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",  # seconds; a missing collector costs little
        "OTEL_BSP_SCHEDULE_DELAY": "500",  # ms; workers' spans arrive within a second
        **({"OTEL_METRIC_EXPORT_INTERVAL": str(METRIC_EXPORT_INTERVAL_MS)} if metrics else {}),
    }
