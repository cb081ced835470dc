"""Cold start of the two handlers: a fresh interpreter, from spawn to first response.

Each sample spawns ``python -m bench.cold_start_target bare|gateway`` (the two interleaved,
ABBA), checks the child's first answer, and splits the time from the parent's spawn mark to
the child's first response into phases: ``interpreter`` (spawn to the child's first line),
``imports``, ``build``, ``first_call``, and, for the gateway, ``standins`` (its in-memory
Kafka and DynamoDB), which ``cold_ms`` leaves out and ``with_standins_ms`` keeps. One
``-X importtime`` run of each lists what the gateway imports beyond the bare handler.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.stats import round_order
from proof.procs import ROOT

TARGET = "bench.cold_start_target"
SIDES = ("bare", "gateway")
SPAWN_TIMEOUT_S = 120.0
PHASE = "bench-phase:"
STANDINS = "standins"


@dataclass(frozen=True)
class ColdSample:
    phases_ms: dict[str, float]  # interpreter, imports, build, first_call, standins

    @property
    def cold_ms(self) -> float:
        """Spawn to first response without the stand-ins."""
        return sum(ms for name, ms in self.phases_ms.items() if name != STANDINS)

    @property
    def with_standins_ms(self) -> float:
        return sum(self.phases_ms.values())


@dataclass
class ColdRuns:
    samples: dict[str, list[ColdSample]] = field(
        default_factory=lambda: {side: [] for side in SIDES})

    def median(self, side: str) -> float:
        return statistics.median(s.cold_ms for s in self.samples[side])

    def median_phases(self, side: str) -> dict[str, float]:
        names = self.samples[side][0].phases_ms
        return {name: statistics.median(s.phases_ms.get(name, 0.0)
                                        for s in self.samples[side]) for name in names}

    def median_with_standins(self, side: str) -> float:
        return statistics.median(s.with_standins_ms for s in self.samples[side])


def check_clock() -> None:
    info = time.get_clock_info("perf_counter")
    if "CLOCK_MONOTONIC" not in info.implementation:
        raise SystemExit(f"bench: error: perf_counter is {info.implementation}; the cold "
                         "start needs CLOCK_MONOTONIC (one clock for parent and child)")


def child_env(policy_file: str, event_file: str, checks_dir: str | None = None) -> dict[str, str]:
    """The children's environment. Both sides load bytecode, as a deployed function does (its
    zip carries a ``.pyc`` per module, ``infra.deploy.bytecode``): ``PYTHONDONTWRITEBYTECODE``
    is dropped so that the warm-up start writes what is missing; with it, every sample would
    compile the project's own modules (the gateway's, not the bare app's) from source.
    ``checks_dir`` holds the routes' checks as the deploy generates them into the gateway's zip
    (``infra.deploy.validators``)."""
    pythonpath = os.pathsep.join(
        p for p in (str(ROOT), checks_dir, os.environ.get("PYTHONPATH")) if p)
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**inherited, "MESH_POLICY_FILE": policy_file, "BENCH_EVENT_FILE": event_file,
            "PYTHONPATH": pythonpath}


def spawn(side: str, env: Mapping[str, str], *flags: str) -> tuple[int, dict[str, Any], str]:
    """Run the target once: (the spawn mark, its JSON line, its stderr)."""
    started = time.perf_counter_ns()
    done = subprocess.run([sys.executable, *flags, "-m", TARGET, side], cwd=ROOT,
                          env=dict(env), capture_output=True, text=True,
                          timeout=SPAWN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold start target {side} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not result.get("ok"):
        raise RuntimeError(f"cold start target {side}: wrong first response (status "
                           f"{result.get('status')}):\n{done.stderr[-2000:]}")
    return started, result, done.stderr


def phases_of(spawned_ns: int, result: Mapping[str, Any]) -> dict[str, float]:
    """Milliseconds per phase (a name that recurs is summed), from the spawn mark on."""
    phases: dict[str, float] = defaultdict(float)
    phases["interpreter"] = (result["started"] - spawned_ns) / 1e6
    previous = result["started"]
    for name, end in result["phases"]:
        phases[name] += (end - previous) / 1e6
        previous = end
    return dict(phases)


def sample(side: str, env: Mapping[str, str]) -> ColdSample:
    spawned, result, _ = spawn(side, env)
    return ColdSample(phases_of(spawned, result))


def measure(env: Mapping[str, str], repeats: int, warmup: int = 1) -> ColdRuns:
    """``warmup`` unmeasured spawns of each side (page cache, bytecode), then ``repeats``
    of each, ABBA."""
    check_clock()
    for _ in range(warmup):
        for side in SIDES:
            spawn(side, env)
    runs = ColdRuns()
    for index in range(repeats):
        for side in round_order(SIDES, index):
            runs.samples[side].append(sample(side, env))
    return runs


@dataclass(frozen=True)
class ImportCost:
    name: str
    self_ms: float
    modules: int


def import_costs(env: Mapping[str, str], side: str) -> dict[str, ImportCost]:
    """One ``-X importtime`` run of ``side``: the self time of every top-level package
    imported in its own phases (the stand-ins' are left out), summed over its modules."""
    _, _, stderr = spawn(side, env, "-X", "importtime")
    phase = "interpreter"
    by_package: dict[str, list[float]] = defaultdict(list)
    for line in stderr.splitlines():
        if line.startswith(PHASE):
            phase = line[len(PHASE):].strip()
            continue
        if not line.startswith("import time:") or phase in (STANDINS, "done"):
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        package = fields[2].strip().split(".")[0]
        by_package[package].append(int(fields[0]) / 1000)
    return {name: ImportCost(name, sum(v), len(v)) for name, v in by_package.items()}


@dataclass(frozen=True)
class ImportReport:
    """What the gateway imports beyond the bare handler (``-X importtime`` inflates every
    figure alike; compare them with each other, not with the cold start)."""

    bare_ms: float
    gateway_ms: float
    extra: list[tuple[ImportCost, float]]  # gateway package, the bare handler's ms of it


def import_report(env: Mapping[str, str], top: int = 12) -> ImportReport:
    bare, gateway = import_costs(env, "bare"), import_costs(env, "gateway")

    def bare_ms(name: str) -> float:
        cost = bare.get(name)
        return 0.0 if cost is None else cost.self_ms

    extra = sorted(((cost, bare_ms(name)) for name, cost in gateway.items()),
                   key=lambda pair: pair[0].self_ms - pair[1], reverse=True)
    return ImportReport(sum(c.self_ms for c in bare.values()),
                        sum(c.self_ms for c in gateway.values()), extra[:top])
