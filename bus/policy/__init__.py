"""The mesh's policy: the model (``bus.policy.model``) and its consistency checks
(``bus.policy.checks``). YAML loading, with file and line for every mistake, is
``infra.policy``'s job."""

from bus.policy.checks import Finding, check_policy
from bus.policy.model import (
    Access,
    Policy,
    RateLimit,
    Route,
    Service,
    ServiceKey,
    Topic,
    subset_request_topic,
)

__all__ = [
    "Access",
    "Finding",
    "Policy",
    "RateLimit",
    "Route",
    "Service",
    "ServiceKey",
    "Topic",
    "check_policy",
    "subset_request_topic",
]
