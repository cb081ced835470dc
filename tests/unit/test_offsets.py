"""OffsetTracker: commit positions never skip a record still in flight."""

from __future__ import annotations

import random

from bus.delivery.offsets import OffsetTracker

TP = ("t", 0)


def test_in_order_completion_moves_the_position() -> None:
    tracker = OffsetTracker()
    for offset in range(3):
        tracker.started(TP, offset)
    assert tracker.committable() == {}
    tracker.finished(TP, 0)
    assert tracker.committable() == {TP: 1}
    assert tracker.committable() == {TP: 1}  # until the broker has accepted it
    tracker.committed({TP: 1})
    tracker.finished(TP, 1)
    tracker.finished(TP, 2)
    assert tracker.committable() == {TP: 3}
    tracker.committed({TP: 3})
    assert tracker.committable() == {}  # nothing new
    assert tracker.in_flight == 0


def test_a_slow_record_holds_the_position_back() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(TP, offset)
    tracker.finished(TP, 12)
    tracker.finished(TP, 11)
    assert tracker.committable() == {}  # 10 is still being handled
    tracker.finished(TP, 10)
    assert tracker.committable() == {TP: 13}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    other = ("t", 1)
    tracker.started(TP, 0)
    tracker.started(other, 5)
    tracker.finished(other, 5)
    assert tracker.committable() == {other: 6}
    tracker.committed({other: 6})
    assert tracker.committable() == {}
    tracker.forget(TP)
    assert tracker.in_flight == 0


def test_random_completion_orders_never_commit_past_an_unfinished_record() -> None:
    rng = random.Random(7)
    for _ in range(200):
        tracker = OffsetTracker()
        offsets = list(range(rng.randrange(1, 30)))
        for offset in offsets:
            tracker.started(TP, offset)
        finished: set[int] = set()
        for offset in rng.sample(offsets, len(offsets)):
            tracker.finished(TP, offset)
            finished.add(offset)
            ready = tracker.committable()
            position = ready.get(TP)
            if position is not None:
                assert all(o in finished for o in range(position))
                tracker.committed(ready)
        assert tracker.committable().get(TP, len(offsets)) == len(offsets)
