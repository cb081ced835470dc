"""CPU time from ``/proc`` (Linux; no psutil): of a process and its live descendants (a
supervisor's worker processes), and of the whole machine, so a benchmark can say where the
cores went. ``parse_stat``/``parse_machine`` are pure (unit-tested); the rest read files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proof.procs import ROOT

TICKS_PER_S = float(os.sysconf("SC_CLK_TCK"))


def parse_stat(text: str) -> float:
    """utime + stime (ticks) of a ``/proc/<pid>/stat`` line (fields 14 and 15; the command
    name in parentheses may hold spaces)."""
    fields = text.rpartition(")")[2].split()
    return float(int(fields[11]) + int(fields[12]))


def parse_machine(text: str) -> tuple[float, float]:
    """(busy, total) ticks of all cores from ``/proc/stat``'s ``cpu`` line (idle and
    iowait are not busy)."""
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    total = float(sum(values[:8]))  # guest time is already in user and nice
    return total - values[3] - values[4], total


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def process_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` alone (0 when it is gone)."""
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text()) / TICKS_PER_S
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its live descendants."""
    ticks = 0.0
    for one in (pid, *descendants(pid)):
        try:
            ticks += parse_stat(Path(f"/proc/{one}/stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
    return ticks / TICKS_PER_S


@dataclass(frozen=True)
class Snapshot:
    processes: dict[str, float]  # name -> CPU seconds of its tree
    machine_busy: float
    machine_total: float
    at_s: float

    @classmethod
    def take(cls, pids: dict[str, tuple[int, bool]], at_s: float) -> Snapshot:
        """``pids``: name -> (pid, with its descendants)."""
        busy, total = parse_machine(Path("/proc/stat").read_text())
        return cls({name: tree_s(pid) if tree else process_s(pid)
                    for name, (pid, tree) in pids.items()}, busy, total, at_s)

    def cores_since(self, before: Snapshot) -> dict[str, float]:
        """Cores used per process tree between two snapshots, and the machine's busy cores
        (``machine``) and core count seen (``cores``)."""
        seconds = self.at_s - before.at_s
        if seconds <= 0:
            return {}
        used = {name: round((self.processes[name] - before.processes.get(name, 0.0)) / seconds,
                            2) for name in self.processes}
        total = self.machine_total - before.machine_total
        cores = total / TICKS_PER_S / seconds
        used["machine"] = round(cores * (self.machine_busy - before.machine_busy) / total, 2) \
            if total > 0 else 0.0
        used["cores"] = round(cores, 1)
        return used


def broker_pid() -> int | None:
    """The local broker's pid (``localstack/kafka/kafka.sh`` writes it), if readable."""
    try:
        return int((ROOT / ".local" / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


class SideCores:
    """Cores each side's processes used while that side was loaded: this process (its
    callers), the side's responder with its worker processes, the broker, and the machine;
    averaged over the side's rounds."""

    def __init__(self, responders: Mapping[str, int]) -> None:
        self._responders = responders  # side -> responder pid
        self._broker = broker_pid()
        self._runs: dict[str, list[dict[str, float]]] = {}

    @contextmanager
    def loaded(self, side: str) -> Iterator[None]:
        pids = {"callers": (os.getpid(), False), "responder": (self._responders[side], True)}
        if self._broker is not None:
            pids["broker"] = (self._broker, False)
        before = Snapshot.take(pids, time.monotonic())
        yield
        used = Snapshot.take(pids, time.monotonic()).cores_since(before)
        self._runs.setdefault(side, []).append(used)

    def mean(self) -> dict[str, dict[str, float]]:
        return {side: {key: round(sum(run.get(key, 0.0) for run in runs) / len(runs), 2)
                       for key in runs[0]}
                for side, runs in self._runs.items() if runs}
