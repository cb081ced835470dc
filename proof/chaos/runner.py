"""Runs the scenarios one after another and reports: one line of counts per scenario, one of
what its fault did, and the last line ``chaos: scenarios=N offered=N lost=N duplicated=N``.

A scenario is an async function of a ``Context`` returning a ``ScenarioResult``; one that
raises is reported as failed (its counts zero) and the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.settings import Settings
from proof.chaos.accounting import Accounting, account, scenario_line, summary_line
from proof.chaos.load import Load, effect_numbers
from proof.chaos.service import EffectLogs

# A safety net for a scenario that hangs, not its schedule: each scenario bounds its own
# waits. Full mode's longest, long-outage, is down 10 min and then drains its backlog.
FAST_SCENARIO_TIMEOUT_S = 600.0
FULL_SCENARIO_TIMEOUT_S = 1500.0


@dataclass(frozen=True)
class Context:
    bootstrap: str  # the shared broker
    aws: Settings  # the shared emulator
    workdir: Path  # this scenario's own folder (effect logs, private data dirs)
    fast: bool


@dataclass
class ScenarioResult:
    name: str
    accounting: Accounting | None
    fault: dict[str, Any]  # what the fault did (evidence that it was injected)
    injected: bool
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        a = self.accounting
        return (a is not None and self.injected and not self.problems
                and a.counts.lost == 0 and a.counts.duplicated == 0)

    def as_dict(self) -> dict[str, Any]:
        a = self.accounting
        return {
            "name": self.name, "ok": self.ok, "injected": self.injected,
            "seconds": round(self.seconds, 1), "fault": self.fault, "problems": self.problems,
            "counts": a.counts.as_dict() if a else None,
            "errors": a.errors if a else {},
            "lost": list(a.lost) if a else [], "duplicated": list(a.duplicated) if a else [],
            "reran": list(a.reran) if a else [],
        }


Scenario = Callable[[Context], Awaitable[ScenarioResult]]


def result_of(name: str, loads: Sequence[Load], acked: set[int], logs: EffectLogs, *,
              fault: dict[str, Any], injected: bool, problems: list[str] | None = None,
              in_log: set[int] | None = None) -> ScenarioResult:
    """Account ``loads`` against the effect logs; unclear failures are problems too."""
    runs = effect_numbers(logs.runs)
    effects = effect_numbers(logs.effects)
    calls = [result for load in loads for result in load.results(acked)]
    accounting = account(calls, effects, runs, in_log)
    found = list(problems or [])
    if accounting.counts.failed_unclear:
        found.append(f"{accounting.counts.failed_unclear} calls failed without a clear error: "
                     f"{accounting.errors}")
    if accounting.counts.stray:
        found.append(f"{accounting.counts.stray} effects of requests nobody offered")
    return ScenarioResult(name, accounting, fault, injected, found)


async def run_one(name: str, scenario: Scenario, context: Context) -> ScenarioResult:
    started = time.monotonic()
    try:
        timeout_s = FAST_SCENARIO_TIMEOUT_S if context.fast else FULL_SCENARIO_TIMEOUT_S
        result = await asyncio.wait_for(scenario(context), timeout_s)
    except Exception as exc:
        result = ScenarioResult(name, None, {}, False, [
            f"scenario failed: {exc!r}", *traceback.format_exc().splitlines()[-6:]])
    result.seconds = time.monotonic() - started
    return result


def report_lines(result: ScenarioResult) -> list[str]:
    lines: list[str] = []
    if result.accounting is not None:
        lines.append(scenario_line(result.name, result.accounting.counts))
    lines.append(f"chaos[{result.name}]: fault {json.dumps(result.fault)} "
                 f"injected={str(result.injected).lower()} in {result.seconds:.1f}s")
    if result.accounting is not None and result.accounting.errors:
        lines.append(f"chaos[{result.name}]: failures by error {result.accounting.errors}")
    lines += [f"chaos[{result.name}]: PROBLEM {p}" for p in result.problems]
    return lines


async def run_suite(scenarios: Sequence[tuple[str, Scenario]], *, fast: bool,
                    bootstrap: str, aws: Settings, keep: bool = False,
                    say: Callable[[str], None] = print) -> list[ScenarioResult]:
    root = Path(tempfile.mkdtemp(prefix="meshgate-chaos-"))
    results: list[ScenarioResult] = []
    try:
        for name, scenario in scenarios:
            workdir = root / name
            workdir.mkdir()
            say(f"chaos[{name}]: running ({'fast' if fast else 'full'})")
            result = await run_one(name, scenario, Context(bootstrap, aws, workdir, fast))
            results.append(result)
            for line in report_lines(result):
                say(line)
    finally:
        if keep:
            say(f"chaos: logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


def totals_line(results: Sequence[ScenarioResult]) -> str:
    counts = [r.accounting.counts for r in results if r.accounting is not None]
    return summary_line(len(results), sum(c.offered for c in counts),
                        sum(c.lost for c in counts), sum(c.duplicated for c in counts))
