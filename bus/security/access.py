"""Which service may produce to which topic: a pure check, enforced on both sides.

The sender refuses to send where it may not; the receiver refuses (quarantines) a message
whose verified sender may not produce to the topic it came from. Patterns use ``fnmatch``
(``orders.*``). Issue 4's policies are the source of these maps.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bus.errors import MeshError


class NotAllowed(MeshError):
    code = "not_allowed"


@dataclass(frozen=True)
class AccessPolicy:
    produce: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # None: consumption is not restricted by this map (older access maps had no consume).
    consume: Mapping[str, frozenset[str]] | None = None
    allow_all: bool = False
    # Edges: the services that may name the end user a call is made for (bus.security.principals).
    edges: frozenset[str] = frozenset()
    # Operator -> the base topics whose dead letters it may replay
    # (bus.security.replay_countersign).
    replay: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Service -> the operations it may call: a request topic is shared by every operation of
    # its service, so the topic alone cannot say which one a caller may send (nor can the
    # broker's ACLs). None: calls are not restricted by this map (older maps had no call).
    calls: Mapping[str, frozenset[str]] | None = None
    # Operations the policy declares free of side effects: a worker handles their requests
    # without the idempotency store (bus.runtime.worker). Not an access right: nothing else
    # reads it.
    side_effect_free: frozenset[str] = frozenset()
    # Services that accept per-pair MACs on messages addressed to them
    # (bus.security.pair_mac); every other receiver takes Ed25519 signatures only.
    pair_mac: frozenset[str] = frozenset()

    @classmethod
    def open(cls) -> AccessPolicy:
        """Everyone may produce everywhere: for tests and local experiments only."""
        return cls(allow_all=True)

    @classmethod
    def from_dict(
        cls,
        produce: Mapping[str, Iterable[str]],
        consume: Mapping[str, Iterable[str]] | None = None,
        replay: Mapping[str, Iterable[str]] | None = None,
        *,
        edges: Iterable[str] = (),
        calls: Mapping[str, Iterable[str]] | None = None,
        side_effect_free: Iterable[str] = (),
        pair_mac: Iterable[str] = (),
    ) -> AccessPolicy:
        return cls(
            {service: frozenset(topics) for service, topics in produce.items()},
            None if consume is None else {s: frozenset(t) for s, t in consume.items()},
            replay={s: frozenset(t) for s, t in (replay or {}).items()},
            edges=frozenset(edges),
            calls=None if calls is None else {s: frozenset(o) for s, o in calls.items()},
            side_effect_free=frozenset(side_effect_free),
            pair_mac=frozenset(pair_mac),
        )

    def may_produce(self, service: str, topic: str) -> bool:
        return self.allow_all or _matches(self.produce.get(service, frozenset()), topic)

    def may_consume(self, service: str, topic: str) -> bool:
        if self.allow_all or self.consume is None:
            return True
        return _matches(self.consume.get(service, frozenset()), topic)

    def may_call(self, service: str, operation: str) -> bool:
        if self.allow_all or self.calls is None:
            return True
        return _matches(self.calls.get(service, frozenset()), operation)

    def may_replay(self, operator: str, topic: str) -> bool:
        return self.allow_all or _matches(self.replay.get(operator, frozenset()), topic)

    def has_side_effects(self, operation: str) -> bool:
        """False only for an operation the policy declares free of side effects."""
        return operation not in self.side_effect_free

    def accepts_pair_mac(self, service: str) -> bool:
        """Whether messages addressed to ``service`` may carry a per-pair MAC."""
        return service in self.pair_mac

    def is_edge(self, service: str) -> bool:
        """Whether ``service`` may name a principal (an open policy: everyone may)."""
        return self.allow_all or service in self.edges

    def check_produce(self, service: str, topic: str) -> None:
        if not self.may_produce(service, topic):
            raise NotAllowed(f"{service} may not produce to {topic}")

    def check_call(self, service: str, operation: str) -> None:
        if not self.may_call(service, operation):
            raise NotAllowed(f"{service} may not call {operation}")

    def check_consume(self, service: str, topic: str) -> None:
        if not self.may_consume(service, topic):
            raise NotAllowed(f"{service} may not consume from {topic}")


def _matches(patterns: frozenset[str], topic: str) -> bool:
    return topic in patterns or any(fnmatch.fnmatchcase(topic, p) for p in patterns)
