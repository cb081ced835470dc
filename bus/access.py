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
    allow_all: bool = False

    @classmethod
    def open(cls) -> AccessPolicy:
        """Everyone may produce everywhere: for tests and local experiments only."""
        return cls(allow_all=True)

    @classmethod
    def from_dict(cls, produce: Mapping[str, Iterable[str]]) -> AccessPolicy:
        return cls({service: frozenset(topics) for service, topics in produce.items()})

    def may_produce(self, service: str, topic: str) -> bool:
        if self.allow_all:
            return True
        patterns = self.produce.get(service, frozenset())
        return topic in patterns or any(fnmatch.fnmatchcase(topic, p) for p in patterns)

    def check_produce(self, service: str, topic: str) -> None:
        if not self.may_produce(service, topic):
            raise NotAllowed(f"{service} may not produce to {topic}")
