"""bench.stats: the pure helpers of the mesh-vs-raw benchmark."""

from __future__ import annotations

import json

import pytest

from bench import stats
from bus import codec


def test_schedule_is_evenly_spaced_and_bounded_by_rate_times_duration() -> None:
    offsets = stats.schedule(200, 0.05)
    assert offsets == pytest.approx([0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04,
                                     0.045])
    assert len(stats.schedule(200, 10)) == 2000


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (10, 0), (-1, 5)])
def test_schedule_refuses_non_positive_inputs(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        stats.schedule(rate, duration)


def test_windows_cover_the_total_in_bounded_chunks() -> None:
    assert stats.windows(1200, 500) == [500, 500, 200]
    assert stats.windows(1000, 500) == [500, 500]
    assert stats.windows(0, 500) == []
    with pytest.raises(ValueError, match="size"):
        stats.windows(10, 0)


@pytest.mark.parametrize("size", [11, 12, 200, 1000])
def test_payload_encodes_to_the_requested_size_like_the_bus_codec(size: int) -> None:
    payload = stats.payload_of_size(size)
    assert len(stats.encoded(payload)) == size
    assert stats.encoded(payload) == codec.encode(payload)
    assert json.loads(stats.encoded(payload)) == payload


def test_payload_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        stats.payload_of_size(5)


def test_summarize_uses_nearest_rank_percentiles() -> None:
    summary = stats.summarize(float(v) for v in range(100, 0, -1))
    assert summary.count == 100
    assert summary.p50_ms == 50
    assert summary.p90_ms == 90
    assert summary.p99_ms == 99
    assert summary.max_ms == 100
    assert summary.mean_ms == pytest.approx(50.5)


def test_summarize_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="no latencies"):
        stats.summarize([])


def test_ratio_and_its_format() -> None:
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(1.0, 0.0) is None
    assert stats.fmt_ratio(1.5) == "1.50x"
    assert stats.fmt_ratio(None) == "n/a"


def test_targets() -> None:
    assert stats.targets(2.0, 2.4, 1000, 700) == {"added_p50_ok": True, "publish_ratio_ok": True}
    assert stats.targets(2.0, 2.5, 1000, 699) == {"added_p50_ok": False,
                                                  "publish_ratio_ok": False}
    assert stats.targets(2.0, 2.1, 0, 10)["publish_ratio_ok"] is False


def test_split_is_near_equal_and_sums_to_the_total() -> None:
    assert stats.split(10, 4) == [3, 3, 2, 2]
    assert stats.split(8, 4) == [2, 2, 2, 2]
    assert stats.split(2, 4) == [1, 1, 0, 0]
    assert sum(stats.split(20_000, 3)) == 20_000
    with pytest.raises(ValueError, match="parts"):
        stats.split(10, 0)


def test_round_order_alternates_abba() -> None:
    orders = [stats.round_order(("raw", "mesh"), i) for i in range(4)]
    assert orders == [("raw", "mesh"), ("mesh", "raw"), ("raw", "mesh"), ("mesh", "raw")]
