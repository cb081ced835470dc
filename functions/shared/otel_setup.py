"""OpenTelemetry SDK setup from the standard environment variables, for the processes that
own a ``main`` (the gateway Lambda, the service workers, the async recorder).

``bus`` stays on the OpenTelemetry API (a library never configures the SDK); the
applications call ``setup_telemetry`` once at start and keep what it returns to flush
(Lambda: before each invocation returns) and shut down (workers: on stop).

Variables (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/)
    ``OTEL_SDK_DISABLED=true``: nothing at all.
    ``OTEL_TRACES_EXPORTER``: comma list of ``otlp`` (OTLP/HTTP protobuf), ``console``,
        ``none``. Unset means ``otlp`` when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
        ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else nothing: with no variable at all the
        SDK is not even imported (zero cost; the API's no-op provider still carries an
        incoming trace context through).
    ``OTEL_METRICS_EXPORTER``: the same choice for metrics (``otlp``, ``console``,
        ``none``), read by a ``PeriodicExportingMetricReader``
        (``OTEL_METRIC_EXPORT_INTERVAL``).
    The SDK and the exporters read the rest themselves: ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_BSP_*``,
    ``OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT|HEADERS|TIMEOUT|COMPRESSION``.

API
    ``telemetry_config(env) -> TelemetryConfig``: pure; what the variables ask for.
    ``setup_telemetry(service_name, env=None, *, set_global=True) -> OtelProviders | None``:
        None when nothing is asked for; else the providers (SDK ``TracerProvider`` and/or
        ``MeterProvider``, each None when its signal is off), installed as the global
        providers unless ``set_global=False`` (tests). ``service_name`` is the default of
        ``service.name``; ``OTEL_SERVICE_NAME`` wins.
    ``OtelProviders.force_flush(timeout_s) -> bool`` and ``shutdown(timeout_s)``: bounded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from functions.errors import FunctionError

if TYPE_CHECKING:  # the SDK loads only when a signal is configured
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

Exporter = Literal["otlp", "console"]
EXPORTERS: Final = ("otlp", "console")
FLUSH_TIMEOUT_S: Final = 2.0
log = logging.getLogger(__name__)


class OtelConfigError(FunctionError, ValueError):
    """An OTEL_* variable names something this setup cannot do (not retriable)."""

    retriable = False


@dataclass(frozen=True)
class TelemetryConfig:
    traces: tuple[Exporter, ...] = ()
    metrics: tuple[Exporter, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.traces and not self.metrics


def _exporters(env: Mapping[str, str], variable: str, signal: str) -> tuple[Exporter, ...]:
    raw = env.get(variable)
    if raw is None or not raw.strip():
        endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT")
        return ("otlp",) if endpoint else ()
    chosen: list[Exporter] = []
    for name in (part.strip().lower() for part in raw.split(",")):
        if name == "none" or not name:
            continue
        if name == "otlp":
            chosen.append("otlp")
        elif name == "console":
            chosen.append("console")
        else:
            raise OtelConfigError(f"{variable}={raw!r}: {name!r} is not one of "
                                  f"{', '.join(EXPORTERS)}, none")
    return tuple(dict.fromkeys(chosen))


def telemetry_config(env: Mapping[str, str]) -> TelemetryConfig:
    """What the variables ask for (pure). Raises ``OtelConfigError`` on an unknown name."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TelemetryConfig()
    return TelemetryConfig(traces=_exporters(env, "OTEL_TRACES_EXPORTER", "TRACES"),
                           metrics=_exporters(env, "OTEL_METRICS_EXPORTER", "METRICS"))


@dataclass(frozen=True)
class OtelProviders:
    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    def force_flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Export what is buffered, within ``timeout_s`` in all; True when all was sent."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        done = True
        if self.tracer_provider is not None:
            done = self.tracer_provider.force_flush(_millis_left(deadline)) and done
        if self.meter_provider is not None:
            done = self.meter_provider.force_flush(_millis_left(deadline)) and done
        return done

    def shutdown(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Flush (bounded) and stop the exporters' threads."""
        self.force_flush(timeout_s)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=_millis_left(
                time.monotonic() + timeout_s))


def _millis_left(deadline: float) -> int:
    return max(int((deadline - time.monotonic()) * 1000), 1)


def _resource(service_name: str) -> Resource:
    """``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (which wins), with
    ``service_name`` when neither names the service."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    named = str(resource.attributes.get(SERVICE_NAME, ""))
    if not named or named.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return resource


def _tracer_provider(exporters: tuple[Exporter, ...], service_name: str) -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    provider = TracerProvider(resource=_resource(service_name))
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter(service_name=service_name)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(exporters: tuple[Exporter, ...], service_name: str) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        MetricReader,
        PeriodicExportingMetricReader,
    )
    readers: list[MetricReader] = []
    for name in exporters:
        exporter: MetricExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            exporter = OTLPMetricExporter()
        else:
            exporter = ConsoleMetricExporter()
        readers.append(PeriodicExportingMetricReader(exporter))
    return MeterProvider(metric_readers=readers,
                         resource=_resource(service_name))


def setup_telemetry(service_name: str, env: Mapping[str, str] | None = None, *,
                    set_global: bool = True) -> OtelProviders | None:
    """Providers for what ``env`` (default ``os.environ``) asks for; None when nothing.

    The exporters read their endpoint, headers, timeout and compression from
    ``os.environ`` (the standard variables), not from ``env``.
    """
    config = telemetry_config(os.environ if env is None else env)
    if config.empty:
        return None
    tracer_provider = _tracer_provider(config.traces, service_name) if config.traces else None
    meter_provider = _meter_provider(config.metrics, service_name) if config.metrics else None
    if set_global:
        from opentelemetry import metrics, trace

        if tracer_provider is not None:
            trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
    log.info("OpenTelemetry: traces %s, metrics %s", ",".join(config.traces) or "off",
             ",".join(config.metrics) or "off")
    return OtelProviders(tracer_provider, meter_provider)


# Leave Lambda this much of its timeout after the flush, so the response still gets out.
FLUSH_MARGIN_MS = 500


def flush_budget_s(context: Any) -> float:
    """How long spans may take to leave a Lambda invocation: FLUSH_TIMEOUT_S, less near the
    invocation's timeout (``context.get_remaining_time_in_millis``)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return FLUSH_TIMEOUT_S
    return max(min(FLUSH_TIMEOUT_S, (float(remaining()) - FLUSH_MARGIN_MS) / 1000), 0.0)
