"""The policies in ``policies/*.yaml``: loading with a file and line for every mistake, the
checks behind ``meshgate policy check``, and what the rest of ``infra`` derives from them.
The model itself is ``bus.policy``."""

from infra.policy.derive import (
    access_map,
    consume_map,
    operators_of,
    services_of,
    topic_specs,
    traffic_document,
)
from infra.policy.load import PolicyError, Report, check_files, load_policy, policy_files
from infra.policy.source import Problem

__all__ = [
    "PolicyError",
    "Problem",
    "Report",
    "access_map",
    "check_files",
    "consume_map",
    "load_policy",
    "operators_of",
    "policy_files",
    "services_of",
    "topic_specs",
    "traffic_document",
]
