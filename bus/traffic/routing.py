"""Which subset serves a call, whether it is mirrored, and the topic of a subset.

Pure: the caller passes the call's headers and a ``random.Random``. Sticky splits hash the
sticky header's value with SHA-256 (never ``hash()``, which is salted per process), so a
value lands on the same subset in every process, on every machine, across restarts.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence

from bus.topics import request_topic
from bus.traffic.model import SUBSET_PATTERN, HeaderMatch, TrafficRules, WeightedSubset

DEFAULT_SUBSET = ""
"""The service's own request topic, ``<service>.requests``."""

SPLIT_POINTS = 100
"""Split weights are whole percents summing to 100: a call draws one of 100 points."""

# Versioned so that a future change of the sticky hash is a deliberate, visible one.
_STICKY_HASH_PREFIX = b"meshgate-sticky-v1\x00"


def choose_subset(rules: TrafficRules, headers: Mapping[str, str], rng: random.Random) -> str:
    """The subset that serves this call.

    The first header match whose header (name compared case-insensitively) equals, or starts
    with, its value wins. Otherwise the weighted split decides: by the sticky header's value
    when ``rules.sticky_header`` is set and present, else by a draw from ``rng``. No match
    and no split: ``DEFAULT_SUBSET``. Only a split without a sticky value draws from ``rng``.
    """
    for match in rules.match:
        value = header_value(headers, match.header)
        if value is not None and _matches(match, value):
            return match.subset
    if not rules.split:
        return DEFAULT_SUBSET
    sticky_value = header_value(headers, rules.sticky_header) if rules.sticky_header else None
    if sticky_value is not None:
        return subset_at(rules.split, sticky_point(sticky_value))
    return subset_at(rules.split, rng.randrange(SPLIT_POINTS))


def should_mirror(rules: TrafficRules, rng: random.Random) -> str | None:
    """The subset to copy this call to (fire and forget), or None: ``mirror.percent`` of calls.

    Draws from ``rng`` only when the rules have a mirror.
    """
    mirror = rules.mirror
    if mirror is None:
        return None
    return mirror.subset if rng.random() * 100 < mirror.percent else None


def request_topic_for(service: str, subset: str) -> str:
    """``orders``, ``""`` -> ``orders.requests``; ``orders``, ``canary`` ->
    ``orders.canary.requests`` (``bus.topics.request_topic``, once the subset is checked)."""
    if subset != DEFAULT_SUBSET and re.fullmatch(SUBSET_PATTERN, subset) is None:
        raise ValueError(f"subset names match {SUBSET_PATTERN}, got {subset!r}")
    return request_topic(service, subset)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, compared case-insensitively; None when it is absent.

    When several spellings are present, the exact one wins, else the first in order."""
    if name in headers:
        return headers[name]
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def sticky_point(value: str) -> int:
    """A point in ``[0, SPLIT_POINTS)`` that depends only on ``value`` (SHA-256 of it)."""
    digest = hashlib.sha256(_STICKY_HASH_PREFIX + value.encode("utf-8")).digest()
    # 2**64 % 100 / 2**64 ~ 1e-18: the modulo bias is far below anything measurable.
    return int.from_bytes(digest[:8], "big") % SPLIT_POINTS


def subset_at(split: Sequence[WeightedSubset], point: int) -> str:
    """The subset whose share of ``[0, SPLIT_POINTS)`` holds ``point``, shares laid out in
    the split's order (a subset of weight 0 holds no point)."""
    upper = 0
    for share in split:
        upper += share.weight
        if point < upper:
            return share.subset
    raise ValueError(f"point {point} lies beyond the split's total weight {upper}")


def _matches(match: HeaderMatch, value: str) -> bool:
    if match.equals is not None:
        return value == match.equals
    return match.prefix is not None and value.startswith(match.prefix)
