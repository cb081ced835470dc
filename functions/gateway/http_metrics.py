"""HTTP server metrics of the edge (plain ASGI middleware, no extra task per request).

Instruments (OpenTelemetry HTTP semantic conventions, stable names)
    ``http.server.request.duration`` (histogram, s): ``http.request.method``,
        ``url.scheme``, ``http.response.status_code``, ``http.route`` (the route template
        the request matched, e.g. ``/v1/products/{sku}``; absent for an unmatched path: a
        raw path would make one series per product), ``error.type`` on a 5xx (the status
        code) or an exception (its class).
    ``http.server.active_requests`` (up-down counter, {request}): ``http.request.method``,
        ``url.scheme``.

A method outside the standard ones is ``_OTHER`` (a caller must not mint series). It sits
inside the tracing middleware, so a recorded duration has the request's span current
(exemplars), and outside everything else, so refusals (413, CORS, 404) are measured too.
The meter is the global one (a no-op until the SDK is configured) unless one is given.
"""

from __future__ import annotations

import time
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bus.telemetry.mesh_telemetry import no_meter_sdk

SCOPE_NAME: Final = "meshgate.gateway"
METRIC_DURATION: Final = "http.server.request.duration"
METRIC_ACTIVE: Final = "http.server.active_requests"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_ROUTE: Final = "http.route"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_SCHEME: Final = "url.scheme"
ERROR_TYPE: Final = "error.type"
OTHER_METHOD: Final = "_OTHER"
KNOWN_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
# The conventions' advice for http.server.request.duration.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)

Attributes = dict[str, AttributeValue]


def method_of(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_of(scope: Scope) -> str | None:
    """The template of the route that matched (set by the router), else None."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


def duration_attributes(
    scope: Scope, method: str, status: int, error: BaseException | None
) -> Attributes:
    """Pure: the attributes of one finished request (see the module notes)."""
    attributes: Attributes = {
        HTTP_REQUEST_METHOD: method,
        URL_SCHEME: str(scope.get("scheme", "http")),
    }
    route = route_of(scope)
    if route is not None:
        attributes[HTTP_ROUTE] = route
    if status:
        attributes[HTTP_RESPONSE_STATUS_CODE] = status
    if error is not None:
        attributes[ERROR_TYPE] = type(error).__qualname__
    elif status >= 500:
        attributes[ERROR_TYPE] = str(status)
    return attributes


def _histogram(meter: metrics.Meter) -> Histogram:
    try:
        return meter.create_histogram(
            METRIC_DURATION, unit="s", description="Duration of HTTP server requests",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:  # opentelemetry-api < 1.28 has no bucket advice
        return meter.create_histogram(
            METRIC_DURATION, unit="s", description="Duration of HTTP server requests"
        )


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, meter_provider: MeterProvider | None = None) -> None:
        self.app = app
        self._given = meter_provider is not None
        meter = metrics.get_meter(SCOPE_NAME, meter_provider=meter_provider)
        self._duration = _histogram(meter)
        self._active = meter.create_up_down_counter(
            METRIC_ACTIVE, unit="{request}", description="HTTP server requests in flight"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Without an SDK the instruments drop every value: nothing to measure (checked per
        # request, so one installed later counts from then on).
        if scope["type"] != "http" or (not self._given and no_meter_sdk()):
            await self.app(scope, receive, send)
            return
        method = method_of(scope)
        active: Attributes = {HTTP_REQUEST_METHOD: method,
                              URL_SCHEME: str(scope.get("scheme", "http"))}
        status = 0

        async def send_measured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        error: BaseException | None = None
        self._active.add(1, active)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_measured)
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - start
            self._active.add(-1, active)
            self._duration.record(seconds, duration_attributes(scope, method, status, error))
