"""The closing note of a chaos run with cluster scenarios (pure): one table row per cluster
scenario with the figures issue 13 asks for: offered, lost, duplicated, the calls that failed
(each a clear error, or the run fails), and how long callers saw errors or waited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proof.chaos.runner import ScenarioResult

PREFIX = "cluster-"
HEADER = ("| scenario | offered | lost | duplicated | failed (all clear) "
          "| error window requests / events | longest wait requests / events |")


def _seen(fault: dict[str, Any], stream: str, key: str) -> str:
    value = fault.get(f"{stream}_seen", {}).get(key)
    return "-" if value is None else f"{value:g} s"


def cluster_table(results: Sequence[ScenarioResult]) -> list[str]:
    """The table's lines (none when no cluster scenario ran)."""
    rows = [r for r in results if r.name.startswith(PREFIX)]
    if not rows:
        return []
    lines = ["chaos: cluster (3 KRaft nodes, RF 3, min.insync.replicas=2, acks=all):", HEADER,
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        c = r.accounting.counts if r.accounting is not None else None
        if c is None:
            lines.append(f"| {r.name} | did not run: {'; '.join(r.problems[:1])} | | | | | |")
            continue
        failed = c.failed_clear + c.failed_unclear
        clear = "yes" if c.failed_unclear == 0 else f"no: {c.failed_unclear} unclear"
        lines.append(
            f"| {r.name} | {c.offered} | {c.lost} | {c.duplicated} | {failed} ({clear}) "
            f"| {_seen(r.fault, 'requests', 'error_window_s')} / "
            f"{_seen(r.fault, 'events', 'error_window_s')} "
            f"| {_seen(r.fault, 'requests', 'slowest_ok_s')} / "
            f"{_seen(r.fault, 'events', 'slowest_ok_s')} |")
    return lines
