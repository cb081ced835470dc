from __future__ import annotations

import pytest

from bus.errors import MeshError
from bus.security.replay import PossibleReplay, ReplayedMessage, ReplayGuard, record_position

NOW = 1_700_000_000_000
WINDOW = 60_000


def test_a_new_id_is_accepted_and_its_duplicate_refused() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("m1", NOW, NOW)
    guard.check_and_remember("m2", NOW, NOW)
    with pytest.raises(ReplayedMessage) as caught:
        guard.check_and_remember("m1", NOW, NOW + 10)
    assert caught.value.code == "replayed_message"
    assert len(guard) == 2


def test_replay_errors_are_permanent_mesh_errors() -> None:
    assert issubclass(PossibleReplay, ReplayedMessage)
    assert issubclass(ReplayedMessage, MeshError)
    assert not ReplayedMessage.retriable
    assert not PossibleReplay.retriable
    assert PossibleReplay.code != ReplayedMessage.code


def test_out_of_order_messages_inside_the_window_are_accepted() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("late", NOW, NOW)
    guard.check_and_remember("early", NOW - WINDOW + 1, NOW)
    guard.check_and_remember("ahead", NOW + 5_000, NOW)
    assert len(guard) == 3


def test_window_edge() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("edge", NOW - WINDOW, NOW)
    with pytest.raises(PossibleReplay):
        guard.check_and_remember("older", NOW - WINDOW - 1, NOW)


def test_entries_leave_with_the_window_and_their_replays_are_still_refused() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("m1", NOW, NOW)
    guard.check_and_remember("m2", NOW + WINDOW, NOW + WINDOW + 1)
    assert len(guard) == 1
    with pytest.raises(PossibleReplay):
        guard.check_and_remember("m1", NOW, NOW + WINDOW + 1)


def test_the_horizon_never_moves_back_when_the_clock_does() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("m1", NOW, NOW)
    guard.check_and_remember("m2", NOW + 2 * WINDOW, NOW + 2 * WINDOW)
    with pytest.raises(PossibleReplay):
        guard.check_and_remember("m1", NOW, NOW + WINDOW)
    assert guard.horizon_ms == NOW + WINDOW


def test_memory_stays_bounded_by_capacity_under_100k_distinct_ids() -> None:
    guard = ReplayGuard(window_ms=10 * 60_000, max_entries=1_000)
    for i in range(100_000):
        guard.check_and_remember(f"m{i}", NOW + i, NOW + i)
        assert len(guard) <= 1_000
    assert len(guard) == 1_000


def test_memory_stays_bounded_by_the_window() -> None:
    guard = ReplayGuard(window_ms=100, max_entries=1_000)
    for i in range(100_000):
        guard.check_and_remember(f"m{i}", NOW + i, NOW + i)
    assert len(guard) <= 101


def test_an_id_evicted_for_capacity_cannot_be_replayed() -> None:
    guard = ReplayGuard(window_ms=10 * 60_000, max_entries=1_000)
    for i in range(100_000):
        guard.check_and_remember(f"m{i}", NOW + i, NOW + i)
    with pytest.raises(PossibleReplay):
        guard.check_and_remember("m0", NOW, NOW + 100_000)
    with pytest.raises(PossibleReplay):
        guard.check_and_remember("m98999", NOW + 98_999, NOW + 100_000)
    with pytest.raises(ReplayedMessage):
        guard.check_and_remember("m99999", NOW + 99_999, NOW + 100_000)


def test_a_flood_at_one_instant_makes_the_guard_refuse_rather_than_forget() -> None:
    guard = ReplayGuard(WINDOW, max_entries=3)
    for i in range(3):
        guard.check_and_remember(f"m{i}", NOW, NOW)
    guard.check_and_remember("m3", NOW, NOW)
    assert len(guard) <= 3
    for message_id in ("m0", "m1", "m2", "m3", "fresh-but-same-instant"):
        with pytest.raises(ReplayedMessage):
            guard.check_and_remember(message_id, NOW, NOW)
    guard.check_and_remember("next-millisecond", NOW + 1, NOW + 1)


@pytest.mark.parametrize(("window_ms", "max_entries"), [(-1, 10), (10, 0)])
def test_bad_settings_are_refused(window_ms: int, max_entries: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        ReplayGuard(window_ms, max_entries)


def test_the_same_record_delivered_again_is_not_a_replay() -> None:
    guard = ReplayGuard(window_ms=60_000, max_entries=10)
    guard.check_and_remember("orders.requests/gateway/m1", 1_000, 1_000, position="3:41")
    # after a rebalance the broker hands out the very same record (same partition, offset)
    guard.check_and_remember("orders.requests/gateway/m1", 1_000, 2_000, position="3:41")
    # a copy written again lands elsewhere: that is a replay
    with pytest.raises(ReplayedMessage):
        guard.check_and_remember("orders.requests/gateway/m1", 1_000, 2_000, position="3:42")
    with pytest.raises(ReplayedMessage):
        guard.check_and_remember("orders.requests/gateway/m1", 1_000, 2_000)


def test_a_redelivery_at_its_own_position_is_not_a_replay() -> None:
    guard = ReplayGuard(WINDOW, 100)
    guard.check_and_remember("m1", NOW, NOW, position=record_position(2, 41))
    guard.check_and_remember("m1", NOW, NOW + 10, position=record_position(2, 41))
    for elsewhere in (record_position(2, 42), record_position(3, 41), None):
        with pytest.raises(ReplayedMessage):
            guard.check_and_remember("m1", NOW, NOW + 20, position=elsewhere)
    assert len(guard) == 1


def test_a_record_position_is_exact() -> None:
    places = [(partition, offset) for partition in (0, 1, 2, 2**31 - 1)
              for offset in (0, 1, 2**32, 2**63 - 1)]
    assert len({record_position(p, o) for p, o in places}) == len(places)


def test_ids_that_differ_in_one_character_are_told_apart() -> None:
    guard = ReplayGuard(WINDOW, 10_000)
    base = "orders.requests/gateway/" + "a" * 32
    variants = {base[:i] + "b" + base[i + 1:] for i in range(len(base))}
    for message_id in (base, *variants, base.upper(), base + "\udcff"):
        guard.check_and_remember(message_id, NOW, NOW)
    assert len(guard) == len(variants) + 3
