"""Counting attack outcomes (pure): per-category tallies, the summary lines and the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTROL = "control"


@dataclass(frozen=True)
class Outcome:
    """What happened to one attack case (or to a control, category ``control``)."""

    category: str
    case: str
    refused: bool
    reached_handler: int  # how many times it ran in a handler (0 for a refused attack)
    reason: str  # the quarantine reason, the HTTP status and problem reason, the parser error


@dataclass
class Tally:
    tried: int = 0
    refused: int = 0
    reached_handler: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # cases that were not refused or ran

    def add(self, outcome: Outcome) -> None:
        self.tried += 1
        self.refused += outcome.refused
        self.reached_handler += outcome.reached_handler
        self.reasons[outcome.reason] += 1
        if not outcome.refused or outcome.reached_handler:
            self.failures.append(f"{outcome.case}: {outcome.reason}")


@dataclass
class Report:
    categories: dict[str, Tally] = field(default_factory=dict)
    control: Tally = field(default_factory=Tally)
    notes: list[str] = field(default_factory=list)

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.category == CONTROL:
                self.control.add(outcome)
            else:
                self.categories.setdefault(outcome.category, Tally()).add(outcome)

    @property
    def tried(self) -> int:
        return sum(t.tried for t in self.categories.values())

    @property
    def refused(self) -> int:
        return sum(t.refused for t in self.categories.values())

    @property
    def reached_handler(self) -> int:
        return sum(t.reached_handler for t in self.categories.values())

    def problems(self, expected: Iterable[str] = ()) -> list[str]:
        """Why the run fails (empty when it passes): a case not refused or that reached a
        handler, an expected category with no case, or a control the probe did not see."""
        found: list[str] = []
        for name, tally in sorted(self.categories.items()):
            found += [f"{name}: {failure}" for failure in tally.failures[:5]]
        found += [f"{name}: no case was tried" for name in expected
                  if self.categories.get(name, Tally()).tried == 0]
        if self.control.tried == 0:
            found.append("control: none sent, so a zero proves nothing")
        elif self.control.reached_handler != self.control.tried:
            found.append(f"control: {self.control.reached_handler} of {self.control.tried} "
                         "genuine messages were seen reaching a handler (the probe is blind)")
        return found + self.notes

    def passed(self, expected: Iterable[str] = ()) -> bool:
        return not self.problems(expected)


def _reasons(reasons: Mapping[str, int], limit: int = 6) -> str:
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{reason} x{count}" for reason, count in top[:limit])
    return text + (f", +{len(top) - limit} more" if len(top) > limit else "")


def lines(report: Report) -> list[str]:
    """The printed summary; the last line is ``attack: tried=N refused=N reached_handler=N``."""
    width = max([len(name) for name in report.categories] + [len(CONTROL)])
    out = []
    for name, tally in sorted(report.categories.items()):
        out.append(f"  {name.ljust(width)}  tried={tally.tried} refused={tally.refused} "
                   f"reached_handler={tally.reached_handler}  [{_reasons(tally.reasons)}]")
    control = report.control
    out.append(f"  {CONTROL.ljust(width)}  sent={control.tried} "
               f"reached_handler={control.reached_handler}  (genuine: must reach)")
    out += [f"  problem: {problem}" for problem in report.problems()]
    out.append(f"attack: tried={report.tried} refused={report.refused} "
               f"reached_handler={report.reached_handler}")
    return out
