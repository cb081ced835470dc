"""What a chaos run adds up to (pure): the caller's log against the service's effect log.

Per request (its number ``n``):

- **succeeded**: the caller got the right reply;
- **failed_clear**: the caller got a typed mesh error (``MeshError``: a code and a
  ``retriable`` flag), e.g. ``DeadlineExceeded`` or ``TransportError``;
- **failed_unclear**: anything else (an untyped exception, a wrong reply, a call that did
  not end within its bound);
- **lost**: no effect ever appeared although the caller got a success, or the broker
  acknowledged the request and the caller got no clear error, or the broker acknowledged it
  and it is missing from the request log afterwards (when the scenario reads the log). A
  caller-side timeout with no effect is ``failed_clear``, not lost: the caller knows;
- **duplicated**: the effect was applied more than once;
- **reran**: the handler ran more than once (reported; an effect made idempotent by
  construction absorbs it, see docs/decisions.md "Chaos");
- **applied_after_failure**: the caller failed clearly but the effect happened (late).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Outcome = Literal["ok", "clear", "unclear", "hung"]


@dataclass(frozen=True)
class CallResult:
    """How one call ended, from the caller's side."""

    n: int
    outcome: Outcome
    accepted: bool  # the broker acknowledged at least one attempt of it
    error: str = ""  # the error's type and code, for the report


@dataclass(frozen=True)
class Counts:
    offered: int
    succeeded: int
    failed_clear: int
    failed_unclear: int
    lost: int
    duplicated: int
    reran: int
    accepted: int
    applied_after_failure: int
    stray: int  # effects of requests nobody offered in this run (must be 0)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Accounting:
    counts: Counts
    lost: tuple[int, ...]
    duplicated: tuple[int, ...]
    reran: tuple[int, ...]
    errors: dict[str, int]  # failed calls by error


def account(
    calls: Sequence[CallResult],
    effects: Iterable[int],
    runs: Iterable[int] | None = None,
    in_log: set[int] | None = None,
) -> Accounting:
    """Count ``calls`` against ``effects`` (one entry per application of a request's effect)
    and ``runs`` (one per handler execution; the effects themselves when omitted).
    ``in_log``: the request numbers the request topic held afterwards, if it was read."""
    applied = Counter(effects)
    executed = Counter(runs) if runs is not None else applied
    offered = {c.n for c in calls}
    lost = sorted(c.n for c in calls if not applied[c.n] and _lost(c, in_log))
    failed = [c for c in calls if c.outcome != "ok"]
    counts = Counts(
        offered=len(calls),
        succeeded=sum(1 for c in calls if c.outcome == "ok"),
        failed_clear=sum(1 for c in calls if c.outcome == "clear"),
        failed_unclear=sum(1 for c in calls if c.outcome in ("unclear", "hung")),
        lost=len(lost),
        duplicated=sum(1 for n in offered if applied[n] > 1),
        reran=sum(1 for n in offered if executed[n] > 1),
        accepted=sum(1 for c in calls if c.accepted),
        applied_after_failure=sum(1 for c in failed if applied[c.n]),
        stray=sum(1 for n in set(applied) | set(executed) if n not in offered),
    )
    return Accounting(
        counts=counts,
        lost=tuple(lost),
        duplicated=tuple(sorted(n for n in offered if applied[n] > 1)),
        reran=tuple(sorted(n for n in offered if executed[n] > 1)),
        errors=dict(Counter(c.error or c.outcome for c in failed)),
    )


def _lost(call: CallResult, in_log: set[int] | None) -> bool:
    """Whether a request without any effect counts as lost (see the module docstring)."""
    if call.outcome == "ok":
        return True
    if not call.accepted:
        return False
    return call.outcome != "clear" or (in_log is not None and call.n not in in_log)


def summary_line(scenarios: int, offered: int, lost: int, duplicated: int) -> str:
    """The last line of a chaos run."""
    return f"chaos: scenarios={scenarios} offered={offered} lost={lost} duplicated={duplicated}"


def scenario_line(name: str, counts: Counts) -> str:
    c = counts
    return (f"chaos[{name}]: offered={c.offered} succeeded={c.succeeded} "
            f"failed_clear={c.failed_clear} failed_unclear={c.failed_unclear} lost={c.lost} "
            f"duplicated={c.duplicated} reran={c.reran} accepted={c.accepted} "
            f"applied_after_failure={c.applied_after_failure} stray={c.stray}")
