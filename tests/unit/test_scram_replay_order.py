"""proof.chaos.broker_scram's model of the order in which Kafka's ScramDelta.apply visits a
replayed log's users (java.util.HashMap iteration over String keys)."""

from __future__ import annotations

from proof.chaos.broker_scram import java_bucket, visited_first


def test_the_order_a_jvm_printed() -> None:
    # A HashMap<String, ...> holding these four users, printed by Java 17 (Kafka 4.1.1's
    # ScramDelta.changes(), docs/decisions.md), iterated in this order:
    printed = ["acldc0dcf96srv", "admin", "orders", "gateway"]
    assert sorted(printed, key=java_bucket) == printed
    assert [java_bucket(name) for name in printed] == [8, 9, 10, 14]


def _replay_order(made_in_order: list[str]) -> list[str]:
    """HashMap iteration: by bucket, and within a bucket in insertion order."""
    return sorted(made_in_order, key=lambda name: (java_bucket(name),
                                                   made_in_order.index(name)))


def test_visited_first_precedes_every_name_made_after_it() -> None:
    name = visited_first("retired-")
    assert name.startswith("retired-")
    assert java_bucket("admin") != 0  # made by kafka.sh before any user of a run
    # Names the run does not choose (the chaos service's is random) may share bucket 0.
    in_bucket_zero = [f"chaosbroker{n:08x}" for n in range(2_000)
                      if java_bucket(f"chaosbroker{n:08x}") == 0][:3]
    assert in_bucket_zero
    for other in [*in_bucket_zero, "orders", "gateway"]:
        assert _replay_order(["admin", name, other])[0] == name
