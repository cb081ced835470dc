"""The benchmarks the report runs: each one a module run as ``python -m MODULE ARGS`` whose
last stdout line is one JSON object. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    module: str
    full: tuple[str, ...]
    fast: tuple[str, ...]
    timeout_s: float  # of the full mode; the fast mode gets a fifth, at least 60 s
    writes_output: bool = False  # takes ``--output FILE`` (else it would write bench/results)

    def argv(self, fast: bool, scratch: Path) -> list[str]:
        args = list(self.fast if fast else self.full)
        if self.writes_output:
            args += ["--output", str(scratch / f"{self.name}.json")]
        return args

    def timeout(self, fast: bool) -> float:
        return max(60.0, self.timeout_s / 5) if fast else self.timeout_s


SUITES: tuple[Suite, ...] = (
    Suite("mesh_vs_raw", "Mesh vs raw aiokafka: request/reply and publish",
          "bench.mesh_vs_raw", (),
          ("--rate", "100", "--duration", "1", "--warmup", "0.5", "--messages", "300",
           "--window", "100", "--rounds", "2"), 400.0, writes_output=True),
    Suite("sweeps", "Mesh vs raw: offered load, callers, payload size, partitions",
          "bench.sweeps", (), ("--fast",), 900.0),
    Suite("worker_procs", "Worker processes 1 and 2: answered/s and p99 at 100 callers",
          "bench.worker_procs", (), ("--fast",), 400.0),
    # The same two, with per-pair MACs instead of signatures (bus.security.pair_mac: the
    # policy's message_auth: pair-mac).
    Suite("mesh_vs_raw_pair", "Mesh vs raw aiokafka with per-pair MACs",
          "bench.mesh_vs_raw", ("--signing", "pair-mac"),
          ("--signing", "pair-mac", "--rate", "100", "--duration", "1", "--warmup", "0.5",
           "--messages", "300", "--window", "100", "--rounds", "2"), 400.0,
          writes_output=True),
    Suite("worker_procs_pair", "One worker process with per-pair MACs: answered/s at 100 "
          "callers", "bench.worker_procs", ("--signing", "pair-mac", "--processes", "1"),
          ("--fast", "--signing", "pair-mac", "--processes", "1"), 300.0),
    Suite("gateway_overhead", "Gateway handler vs bare FastAPI + Mangum, and cold start",
          "bench.gateway_overhead", (),
          ("--requests", "200", "--warmup", "50", "--rounds", "2", "--cold", "1",
           "--cold-warmup", "0", "--no-importtime"), 600.0, writes_output=True),
    Suite("e2e_echo", "End to end through the emulator vs an echo Lambda",
          "bench.e2e_echo", (), ("--count", "10", "--warmup", "2", "--rounds", "2"), 300.0),
    Suite("edge_hops", "POST /v1/orders hop by hop, from its traces",
          "bench.edge_hops", (), ("--count", "10", "--warmup", "2", "--spans-wait", "20"),
          300.0),
    Suite("ratelimit_overload", "Rate limiter at 10x overload, several processes, emulator",
          "bench.ratelimit_overload", (),
          ("--duration", "3", "--rounds", "1", "--processes", "3", "--only", "leased"), 300.0),
    Suite("dynamodb_client", "Idempotency claim + completion per request: botocore vs "
          "the fast item calls, emulator", "bench.dynamodb_client", (),
          ("--requests", "40", "--rounds", "2", "--concurrency", "1,8"), 300.0),
    Suite("skeleton", "Through the emulator: GET /healthz vs POST /v1/orders",
          "bench.skeleton_latency", (), ("--count", "10", "--warmup", "2"), 300.0),
    Suite("memory", "Memory: gateway RSS, worker RSS growth, cache bounds",
          "bench.memory", (), ("--fast",), 600.0),
)

NAMES = tuple(s.name for s in SUITES)
