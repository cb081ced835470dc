"""What ``meshgate policy plan`` and ``apply`` say, in plain sentences (pure).

Like Terraform: the changes one a line (``+`` create, ``~`` change, ``-`` delete, ``!``
impossible), then one summary sentence: "No changes. The broker matches the policy (6
topics)." or "Plan: 2 to create, 1 to grow, 0 to delete."
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Kafka side loads only when a plan is made
    from infra.kafka.topics import TopicPlan


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _impossible(plan: TopicPlan) -> str:
    n = len(plan.impossible)
    return (f" {_count(n, 'declared change')} Kafka cannot make (marked !): "
            "the broker will not match the policy until you resolve "
            f"{'it' if n == 1 else 'them'}.")


def plan_summary(plan: TopicPlan, declared: int) -> str:
    """The sentence that ends a plan: what ``apply`` would do, or that nothing is to do."""
    if plan.empty:
        if plan.impossible:
            return "No changes to apply." + _impossible(plan)
        return f"No changes. The broker matches the policy ({_count(declared, 'topic')})."
    counts = [f"{len(plan.create)} to create", f"{len(plan.grow)} to grow"]
    if plan.reconfigure:
        counts.append(f"{len(plan.reconfigure)} to reconfigure")
    counts.append(f"{len(plan.delete)} to delete")
    text = f"Plan: {', '.join(counts)}."
    return text + _impossible(plan) if plan.impossible else text


def apply_summary(plan: TopicPlan, declared: int, done: list[str]) -> str:
    """The sentence that ends an apply: what it did, and whether the broker now matches."""
    if plan.empty:
        return plan_summary(plan, declared)
    counts = [f"{len(plan.create)} created", f"{len(plan.grow)} grown"]
    if plan.reconfigure:
        counts.append(f"{len(plan.reconfigure)} reconfigured")
    counts.append(f"{len(plan.delete)} deleted")
    text = f"Apply complete: {', '.join(counts)}."
    if plan.impossible:
        return text + _impossible(plan)
    if any(line.startswith("!") for line in done):
        return text + " The broker does not show every change yet (marked !): plan again soon."
    return text + f" The broker matches the policy ({_count(declared, 'topic')})."
