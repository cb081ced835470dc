"""What the rest of ``infra`` consumes, derived from the policy: the access map handed to
every service, and the topics to provision. Each accepts a loaded ``Policy`` or the policy
files (a file, a directory of them, or a list)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bus.policy.model import Policy
from infra.policy.load import load_policy

if TYPE_CHECKING:
    from infra.kafka.topics import TopicSpec

PolicySource = Policy | Path | Iterable[Path]


def _policy(source: PolicySource) -> Policy:
    return source if isinstance(source, Policy) else load_policy(source)


def access_map(source: PolicySource) -> dict[str, Any]:
    """``{"produce": {service: [topics]}, "consume": {service: [topics]}, "replay": {operator:
    [topics]}}`` for every declared service: its ``produce`` list plus the request topics
    (every subset) of each operation it may call; its ``consume`` list plus its own request
    topics; and for every operator, the topics it may replay dead letters onto; and
    ``"edges": [service]``, the services that may name a principal; ``"call": {service:
    [operations]}``, the operations each may call (receivers check a request's operation:
    its request topic is shared by every operation of the service); ``"side_effect_free":
    [operation]``, the operations whose requests skip the idempotency store; ``"pair_mac":
    [service]``, the services that accept per-pair MACs (``bus.security.pair_mac``)."""
    policy = _policy(source)
    return {"produce": policy.produce_map(), "consume": policy.consume_map(),
            "replay": policy.replay_map(), "edges": policy.edges(),
            "call": {service: list(policy.callable_operations(service))
                     for service in policy.services},
            "side_effect_free": policy.side_effect_free(),
            "pair_mac": policy.pair_mac_services()}


def consume_map(source: PolicySource) -> dict[str, list[str]]:
    """Every service -> the topics it may consume from (its own request topics included)."""
    return _policy(source).consume_map()


def services_of(source: PolicySource) -> list[str]:
    return sorted(_policy(source).services)


def operators_of(source: PolicySource) -> list[str]:
    """The operators: identities with a signing key that are not services."""
    return sorted(_policy(source).operators)


def topic_specs(source: PolicySource) -> list[TopicSpec]:
    """The declared topics, in declaration order, as ``infra.kafka.topics`` provisions them."""
    from infra.kafka.topics import TopicSpec  # here: infra.kafka.topics may import this module

    return [
        TopicSpec(name=name, partitions=topic.partitions, replication=topic.replication,
                  config=topic.kafka_config())
        for name, topic in _policy(source).topics.items()
    ]


def traffic_document(source: PolicySource) -> dict[str, Any]:
    """The traffic rules by operation as JSON-able data: what ``bus.traffic.table`` reads
    from a file or an SSM parameter (``{operation: rules}``)."""
    return {operation: rules.model_dump(mode="json", exclude_defaults=True)
            for operation, rules in _policy(source).traffic.items()}
