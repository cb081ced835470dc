"""The chaos accounting (pure): what counts as lost, duplicated, re-run and failed."""

from __future__ import annotations

from proof.chaos.accounting import CallResult, account, summary_line


def test_a_success_without_effect_is_lost_and_a_clear_timeout_without_effect_is_not() -> None:
    calls = [CallResult(0, "ok", True), CallResult(1, "clear", True, "DeadlineExceeded"),
             CallResult(2, "clear", False), CallResult(3, "ok", True)]
    result = account(calls, effects=[3])
    assert result.lost == (0,)
    assert result.counts.failed_clear == 2
    assert result.counts.succeeded == 2


def test_accepted_without_a_clear_answer_or_missing_from_the_log_is_lost() -> None:
    calls = [CallResult(0, "hung", True), CallResult(1, "unclear", False),
             CallResult(2, "clear", True), CallResult(3, "clear", True)]
    result = account(calls, effects=[], in_log={3})
    assert result.lost == (0, 2)
    assert result.counts.failed_unclear == 2


def test_duplicates_are_counted_at_the_effect_and_reruns_apart() -> None:
    calls = [CallResult(n, "ok", True) for n in range(3)]
    fenced = account(calls, effects=[0, 1, 2], runs=[0, 1, 1, 2])
    assert (fenced.counts.duplicated, fenced.counts.reran) == (0, 1)
    assert fenced.reran == (1,)
    raw = account(calls, effects=[0, 1, 1, 2])
    assert (raw.counts.duplicated, raw.counts.reran) == (1, 1)
    assert raw.duplicated == (1,)


def test_late_effects_and_strays_are_reported() -> None:
    calls = [CallResult(0, "clear", True), CallResult(1, "ok", True)]
    result = account(calls, effects=[0, 1, 7])
    assert result.counts.applied_after_failure == 1
    assert result.counts.stray == 1
    assert result.counts.lost == 0


def test_summary_line() -> None:
    assert summary_line(5, 100, 0, 0) == "chaos: scenarios=5 offered=100 lost=0 duplicated=0"
