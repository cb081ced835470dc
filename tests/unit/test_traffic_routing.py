"""bus.traffic.routing: header matches, weighted and sticky splits, mirroring, subset topics."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bus.traffic.model import HeaderMatch, Mirror, TrafficRules, WeightedSubset
from bus.traffic.routing import (
    DEFAULT_SUBSET,
    choose_subset,
    header_value,
    request_topic_for,
    should_mirror,
    sticky_point,
    subset_at,
)

DRAWS = 100_000
TOLERANCE_PP = 1.0  # percentage points; one standard deviation is at most 0.16 pp here
REPO_ROOT = Path(__file__).resolve().parents[2]


def split(*shares: tuple[str, int], sticky_header: str | None = None) -> TrafficRules:
    return TrafficRules(
        split=tuple(WeightedSubset(subset=subset, weight=weight) for subset, weight in shares),
        sticky_header=sticky_header,
    )


def percent(count: int, total: int) -> float:
    return count * 100 / total


def rng_untouched(rng: random.Random, seed: int) -> bool:
    return rng.getstate() == random.Random(seed).getstate()


# --- header matches ---------------------------------------------------------------------


def test_no_rules_means_the_default_subset_without_a_draw() -> None:
    rng = random.Random(1)
    assert choose_subset(TrafficRules(), {"x-user": "alice"}, rng) == DEFAULT_SUBSET == ""
    assert rng_untouched(rng, 1)


def test_equals_match_sends_the_call_to_its_subset() -> None:
    rules = TrafficRules(match=(HeaderMatch(header="x-tenant", equals="acme", subset="canary"),))
    rng = random.Random(1)
    assert choose_subset(rules, {"x-tenant": "acme"}, rng) == "canary"
    assert choose_subset(rules, {"x-tenant": "acme-2"}, rng) == ""
    assert choose_subset(rules, {"x-tenant": "ACME"}, rng) == ""  # values are exact
    assert choose_subset(rules, {}, rng) == ""
    assert rng_untouched(rng, 1)


def test_prefix_match_sends_the_call_to_its_subset() -> None:
    rules = TrafficRules(match=(HeaderMatch(header="x-user", prefix="test-", subset="beta"),))
    rng = random.Random(1)
    assert choose_subset(rules, {"x-user": "test-alice"}, rng) == "beta"
    assert choose_subset(rules, {"x-user": "test-"}, rng) == "beta"
    assert choose_subset(rules, {"x-user": "alice-test-"}, rng) == ""


@pytest.mark.parametrize("spelling", ["x-tenant", "X-Tenant", "X-TENANT", "x-TeNaNt"])
def test_header_names_match_case_insensitively(spelling: str) -> None:
    rules = TrafficRules(match=(HeaderMatch(header="X-Tenant", equals="acme", subset="canary"),))
    assert choose_subset(rules, {spelling: "acme"}, random.Random(1)) == "canary"


def test_the_exact_spelling_wins_over_other_spellings_then_the_first() -> None:
    assert header_value({"X-A": "1", "x-a": "2"}, "x-a") == "2"
    assert header_value({"X-A": "1", "x-A": "2"}, "x-a") == "1"
    assert header_value({"b": "1"}, "a") is None


def test_the_first_matching_rule_wins() -> None:
    rules = TrafficRules(
        match=(
            HeaderMatch(header="x-user", prefix="test-", subset="beta"),
            HeaderMatch(header="x-user", equals="test-alice", subset="canary"),
            HeaderMatch(header="x-region", equals="eu", subset="eu"),
        )
    )
    rng = random.Random(1)
    assert choose_subset(rules, {"x-user": "test-alice", "x-region": "eu"}, rng) == "beta"
    assert choose_subset(rules, {"x-user": "alice", "x-region": "eu"}, rng) == "eu"


def test_header_matches_take_precedence_over_split_and_sticky_split() -> None:
    rules = TrafficRules(
        match=(HeaderMatch(header="x-tenant", equals="acme", subset="beta"),),
        split=(WeightedSubset(subset="canary", weight=100),),
        sticky_header="x-user",
    )
    rng = random.Random(1)
    assert choose_subset(rules, {"x-tenant": "acme", "x-user": "alice"}, rng) == "beta"
    assert rng_untouched(rng, 1)
    assert choose_subset(rules, {"x-tenant": "other", "x-user": "alice"}, rng) == "canary"
    assert choose_subset(rules, {"x-tenant": "other"}, rng) == "canary"


# --- weighted split ---------------------------------------------------------------------


def test_a_90_10_split_holds_within_one_point_over_100k_draws() -> None:
    rules = split(("", 90), ("canary", 10))
    rng = random.Random(20240601)
    counts = Counter(choose_subset(rules, {}, rng) for _ in range(DRAWS))
    assert set(counts) == {"", "canary"}
    assert abs(percent(counts[""], DRAWS) - 90) <= TOLERANCE_PP
    assert abs(percent(counts["canary"], DRAWS) - 10) <= TOLERANCE_PP


def test_a_three_way_split_holds_within_one_point_over_100k_draws() -> None:
    rules = split(("", 50), ("canary", 30), ("beta", 20))
    rng = random.Random(7)
    counts = Counter(choose_subset(rules, {}, rng) for _ in range(DRAWS))
    for subset, weight in (("", 50), ("canary", 30), ("beta", 20)):
        assert abs(percent(counts[subset], DRAWS) - weight) <= TOLERANCE_PP


def test_a_one_percent_share_holds_within_a_fifth_of_a_point() -> None:
    rules = split(("", 99), ("canary", 1))
    rng = random.Random(3)
    canary = sum(choose_subset(rules, {}, rng) == "canary" for _ in range(DRAWS))
    assert abs(percent(canary, DRAWS) - 1) <= 0.2


def test_weights_of_0_and_100_are_never_and_always() -> None:
    rules = split(("", 0), ("canary", 100), ("beta", 0))
    rng = random.Random(5)
    assert {choose_subset(rules, {}, rng) for _ in range(10_000)} == {"canary"}


def test_every_point_lands_on_the_share_that_holds_it() -> None:
    rules = split(("a", 10), ("b", 0), ("c", 60), ("d", 30))
    owners = [subset_at(rules.split, point) for point in range(100)]
    assert owners == ["a"] * 10 + ["c"] * 60 + ["d"] * 30
    with pytest.raises(ValueError, match="beyond"):
        subset_at(rules.split, 100)


# --- sticky split -----------------------------------------------------------------------


def test_sticky_values_land_on_a_fixed_subset_whatever_the_rng() -> None:
    rules = split(("", 50), ("canary", 50), sticky_header="x-user")
    for value in ("alice", "bob", "carol", "user-42"):
        seen = {
            choose_subset(rules, {"x-user": value}, random.Random(seed)) for seed in range(50)
        }
        assert len(seen) == 1, value


def test_sticky_routing_does_not_draw_and_reads_the_header_case_insensitively() -> None:
    rules = split(("", 50), ("canary", 50), sticky_header="X-User")
    rng = random.Random(9)
    assert choose_subset(rules, {"x-user": "bob"}, rng) == "canary"
    assert choose_subset(rules, {"X-USER": "bob"}, rng) == "canary"
    assert rng_untouched(rng, 9)


def test_sticky_points_are_pinned_so_users_never_reshuffle_between_releases() -> None:
    # Changing the hash moves users between subsets; if this fails, that is what happened.
    pinned = {"alice": 46, "bob": 88, "carol": 6, "dave": 20, "erin": 27, "user-42": 58, "": 50}
    assert {value: sticky_point(value) for value in pinned} == pinned
    rules = split(("", 50), ("canary", 50), sticky_header="x-user")
    subsets = {v: choose_subset(rules, {"x-user": v}, random.Random(0)) for v in pinned}
    assert subsets == {
        "alice": "", "bob": "canary", "carol": "", "dave": "", "erin": "", "user-42": "canary",
        "": "canary",
    }


_OTHER_PROCESS = """
import json, random, sys
from bus.traffic.model import TrafficRules, WeightedSubset
from bus.traffic.routing import choose_subset
rules = TrafficRules(
    split=(WeightedSubset(subset="", weight=70), WeightedSubset(subset="canary", weight=30)),
    sticky_header="x-user",
)
values = json.load(sys.stdin)
rng = random.Random()
print(json.dumps([choose_subset(rules, {"x-user": v}, rng) for v in values]))
"""


def run_in_another_process(values: list[str], hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS],
        input=json.dumps(values), capture_output=True, text=True, env=env, check=True,
        cwd=REPO_ROOT,
    )
    subsets: list[str] = json.loads(done.stdout)
    return subsets


def test_sticky_routing_is_the_same_in_independent_processes() -> None:
    values = [f"user-{n}" for n in range(2_000)] + ["alice", "bob", "ünïcødé", ""]
    first = run_in_another_process(values, hash_seed="1")
    second = run_in_another_process(values, hash_seed="2")
    rules = split(("", 70), ("canary", 30), sticky_header="x-user")
    here = [choose_subset(rules, {"x-user": v}, random.Random()) for v in values]
    assert first == second == here
    assert set(here) == {"", "canary"}


def test_sticky_routing_respects_weights_over_many_distinct_values() -> None:
    rules = split(("", 90), ("canary", 10), sticky_header="x-user")
    rng = random.Random(0)
    counts = Counter(choose_subset(rules, {"x-user": f"user-{n}"}, rng) for n in range(DRAWS))
    assert abs(percent(counts[""], DRAWS) - 90) <= TOLERANCE_PP
    assert abs(percent(counts["canary"], DRAWS) - 10) <= TOLERANCE_PP


def test_sticky_points_spread_evenly_over_all_100_points() -> None:
    points = Counter(sticky_point(f"session-{n}") for n in range(DRAWS))
    assert set(points) == set(range(100))
    expected = DRAWS / 100
    assert all(abs(count - expected) <= 0.15 * expected for count in points.values())


def test_without_the_sticky_header_the_split_draws() -> None:
    rules = split(("", 90), ("canary", 10), sticky_header="x-user")
    rng = random.Random(11)
    canary = sum(choose_subset(rules, {"x-other": "v"}, rng) == "canary" for _ in range(DRAWS))
    assert abs(percent(canary, DRAWS) - 10) <= TOLERANCE_PP


# --- mirroring --------------------------------------------------------------------------


def test_no_mirror_means_none_without_a_draw() -> None:
    rng = random.Random(1)
    assert should_mirror(TrafficRules(), rng) is None
    assert rng_untouched(rng, 1)


@pytest.mark.parametrize("mirror_percent", [10.0, 25.0, 50.0])
def test_mirror_percent_holds_within_one_point_over_100k_draws(mirror_percent: float) -> None:
    rules = TrafficRules(mirror=Mirror(subset="shadow", percent=mirror_percent))
    rng = random.Random(42)
    results = Counter(should_mirror(rules, rng) for _ in range(DRAWS))
    assert set(results) == {"shadow", None}
    assert abs(percent(results["shadow"], DRAWS) - mirror_percent) <= TOLERANCE_PP


def test_a_fractional_mirror_percent_holds_within_a_tenth_of_a_point() -> None:
    rules = TrafficRules(mirror=Mirror(subset="shadow", percent=0.5))
    rng = random.Random(4)
    mirrored = sum(should_mirror(rules, rng) == "shadow" for _ in range(DRAWS))
    assert abs(percent(mirrored, DRAWS) - 0.5) <= 0.1


@pytest.mark.parametrize(("mirror_percent", "expected"), [(0.0, None), (100.0, "shadow")])
def test_mirror_percent_0_and_100_are_never_and_always(
    mirror_percent: float, expected: str | None
) -> None:
    rules = TrafficRules(mirror=Mirror(subset="shadow", percent=mirror_percent))
    rng = random.Random(8)
    assert {should_mirror(rules, rng) for _ in range(10_000)} == {expected}


# --- topics -----------------------------------------------------------------------------


def test_request_topic_for_a_subset() -> None:
    assert request_topic_for("orders", "") == "orders.requests"
    assert request_topic_for("orders", "canary") == "orders.canary.requests"
    assert request_topic_for("orders", "v2-beta") == "orders.v2-beta.requests"


@pytest.mark.parametrize("subset", ["Canary", "a.b", "-x", "has space", "x" * 64])
def test_request_topic_for_refuses_a_malformed_subset(subset: str) -> None:
    with pytest.raises(ValueError, match="subset"):
        request_topic_for("orders", subset)
