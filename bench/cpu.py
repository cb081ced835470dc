"""CPU time from ``/proc`` (Linux; no psutil): of a process and its live descendants (a
supervisor's worker processes), and of the whole machine, so a benchmark can say where the
cores went. ``parse_stat``/``parse_machine`` are pure (unit-tested); the rest read files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
