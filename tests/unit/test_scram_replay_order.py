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


def test_visited_first_precedes_every_other_name() -> None:
    others = ["admin", "orders", "gateway"]
    name = visited_first("retired-", others)
    assert name.startswith("retired-")
    assert all(java_bucket(name) < java_bucket(other) for other in others)
