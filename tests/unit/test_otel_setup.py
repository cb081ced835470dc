"""functions.shared.otel_setup: the standard OTEL_* variables decide the exporters; nothing
(not even the SDK import) without them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider

from functions.shared.otel_setup import (
    OtelConfigError,
    TelemetryConfig,
    setup_telemetry,
    telemetry_config,
)
from tests.support import ROOT


def test_no_variables_means_nothing() -> None:
    assert telemetry_config({}).empty
    assert setup_telemetry("svc", {}, set_global=False) is None


@pytest.mark.parametrize(("env", "expected"), [
    ({"OTEL_TRACES_EXPORTER": "otlp"}, TelemetryConfig(traces=("otlp",))),
    ({"OTEL_TRACES_EXPORTER": " console , OTLP,console"},
     TelemetryConfig(traces=("console", "otlp"))),
    ({"OTEL_TRACES_EXPORTER": "none"}, TelemetryConfig()),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
     TelemetryConfig(traces=("otlp",), metrics=("otlp",))),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRICS_EXPORTER": "none"},
     TelemetryConfig(traces=("otlp",))),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"},
     TelemetryConfig(traces=("otlp",))),
    ({"OTEL_METRICS_EXPORTER": "console"}, TelemetryConfig(metrics=("console",))),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, TelemetryConfig()),
])
def test_variables_choose_the_exporters(env: dict[str, str], expected: TelemetryConfig) -> None:
    assert telemetry_config(env) == expected


def test_an_unknown_exporter_is_refused_with_its_name() -> None:
    with pytest.raises(OtelConfigError, match="zipkin"):
        telemetry_config({"OTEL_TRACES_EXPORTER": "otlp,zipkin"})


def test_console_traces_and_metrics_are_set_up_and_flush(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=edge")
    providers = setup_telemetry("orders", {"OTEL_TRACES_EXPORTER": "console",
                                           "OTEL_METRICS_EXPORTER": "console"},
                                set_global=False)
    assert providers is not None
    assert isinstance(providers.tracer_provider, TracerProvider)
    assert providers.meter_provider is not None
    resource = providers.tracer_provider.resource.attributes
    assert resource["service.name"] == "orders"
    assert resource["team"] == "edge"
    providers.tracer_provider.get_tracer("t").start_span("hello").end()
    providers.meter_provider.get_meter("m").create_counter("hits").add(1)
    assert providers.force_flush(2.0)
    providers.shutdown(1.0)  # (the console exporters print to the stdout pytest captured)


def test_otel_service_name_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-canary")
    providers = setup_telemetry("orders", {"OTEL_TRACES_EXPORTER": "console"}, set_global=False)
    assert providers is not None
    assert providers.tracer_provider is not None
    assert providers.tracer_provider.resource.attributes["service.name"] == "orders-canary"
    assert providers.meter_provider is None
    providers.shutdown(0.5)


def test_without_variables_the_sdk_is_never_imported() -> None:
    code = ("import os, sys\n"
            "for k in [k for k in os.environ if k.startswith('OTEL_')]: del os.environ[k]\n"
            "from functions.shared.otel_setup import setup_telemetry\n"
            "assert setup_telemetry('x') is None\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
