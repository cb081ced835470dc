"""The local OTLP/HTTP collector: ``python -m infra.local.collector`` (started by ``meshgate up``).

Receives ``POST /v1/traces`` and ``POST /v1/metrics`` (protobuf, optionally gzip or deflate,
as the SDK's OTLP/HTTP exporters send them) on 127.0.0.1:<collector_port> (setting
``MESHGATE_COLLECTOR_PORT``, default 4318) and appends one JSON line per span to
``.local/telemetry/spans.jsonl`` and per metric to ``metrics.jsonl`` (rotated at 50 MB;
``infra.local.span_log``), which ``meshgate trace`` reads. Answers as the OTLP/HTTP spec says:
200 with an empty protobuf response, 400 for a body that does not decode (the sender must not
retry it), 415 for JSON (not supported here), 413 over 32 MB, 404 elsewhere.

A ``ThreadingHTTPServer`` (stdlib) in a thread; the main thread waits for SIGTERM/SIGINT and
then shuts the server down.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final

from infra.local.otlp_decode import OtlpDecodeError, decompress, metric_rows, span_rows
from infra.local.span_log import MAX_BYTES, JsonLines
from infra.settings import Settings
from infra.stack.otel_env import (
    COLLECTOR_HOST,
    METRICS_FILE,
    SPANS_FILE,
    telemetry_dir,
)

MAX_BODY_BYTES: Final = 32 * 1024 * 1024
PROTOBUF: Final = "application/x-protobuf"
log = logging.getLogger("meshgate.collector")


@dataclass(frozen=True)
class CollectorConfig:
    folder: Path
    host: str = COLLECTOR_HOST
    port: int = 4318  # the default of Settings.collector_port
    max_file_bytes: int = MAX_BYTES


class CollectorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, config: CollectorConfig) -> None:
        self.spans = JsonLines(config.folder / SPANS_FILE, config.max_file_bytes)
        self.metrics = JsonLines(config.folder / METRICS_FILE, config.max_file_bytes)
        super().__init__((config.host, config.port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: CollectorServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stalled client does not hold a thread forever

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length_text = self.headers.get("content-length", "")
        refusal = (404 if path not in ("/v1/traces", "/v1/metrics")
                   else 411 if not length_text.isdigit()
                   else 413 if int(length_text) > MAX_BODY_BYTES else None)
        if refusal is not None:
            self.close_connection = True  # the body is left unread
            self._answer(refusal, b"")
            return
        length = int(length_text)
        body = self.rfile.read(length)
        content_type = (self.headers.get("content-type") or PROTOBUF).split(";")[0].strip()
        if content_type != PROTOBUF:
            self._answer(415, b"")
            return
        try:
            raw = decompress(body, self.headers.get("content-encoding"))
            if path == "/v1/traces":
                self.server.spans.append(span_rows(raw))
            else:
                self.server.metrics.append(metric_rows(raw))
        except OtlpDecodeError as exc:
            log.warning("refused an export: %s", exc)
            self._answer(400, b"")
            return
        except OSError as exc:  # the disk: the sender may retry
            log.error("cannot write the export: %s", exc)
            self._answer(503, b"")
            return
        self._answer(200, b"")  # an empty Export*ServiceResponse: full success

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", PROTOBUF)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def serve(config: CollectorConfig, stop: threading.Event) -> None:
    """Serve until ``stop`` is set."""
    server = CollectorServer(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="otlp-collector", daemon=True)
    thread.start()
    log.info("collecting OTLP/HTTP on %s:%d into %s", config.host, server.port, config.folder)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    # No options: the port and folder are settings. The parser answers --help (and refuses
    # anything else) instead of starting a collector that holds the port.
    argparse.ArgumentParser(
        prog="python -m infra.local.collector",
        description="The local OTLP/HTTP collector that `meshgate up` starts; its port and "
                    "folder come from MESHGATE_COLLECTOR_PORT and MESHGATE_LOCAL_DIR.",
    ).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.resolve()  # MESHGATE_* from ``meshgate up`` (its port, its folder)
    config = CollectorConfig(folder=telemetry_dir(settings), port=settings.collector_port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    try:
        serve(config, stop)
    except OSError as exc:
        print(f"collector: error: cannot listen on {config.host}:{config.port} ({exc}); "
              "stop what uses the port or `meshgate down` then `meshgate up`", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
