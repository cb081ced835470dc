"""The error hierarchy of ``infra``: each error is one line a person can act on, and says
its ``code`` and whether retrying may succeed (``retriable``).

Every error ``infra`` raises on purpose descends from ``InfraError`` (policy, deploy,
packaging, processes, keys, traces, the OTLP collector's decoding...). A class's ``code`` is
its own when it names one, else its name in snake case (``NotReachable`` ->
``not_reachable``), so that a new error can never go without one. Retry loops (the AWS
waits, the readiness probes) catch only errors whose ``retriable`` is set.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


class InfraError(Exception):
    code: ClassVar[str] = "infra_error"
    retriable: bool = False  # the class's default; an instance may say otherwise

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = snake(cls.__name__)

    def __init__(self, what: str, fix: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(f"{what}; {fix}" if fix else what)
        self.what = what
        self.fix = fix
        if retriable is not None:
            self.retriable = retriable


class NotReachable(InfraError):
    """A service (broker, emulator, endpoint) does not answer."""

    code = "not_reachable"
    retriable = True


class DeployFailed(InfraError):
    """CloudFormation refused or rolled back a change."""

    code = "deploy_failed"


class PackagingFailed(InfraError):
    """A function's zip could not be built."""

    code = "packaging_failed"


class ProcessFailed(InfraError):
    """A local process (script, worker) failed to start or stop."""

    code = "process_failed"


class KafkaAdminFailed(InfraError):
    """The Kafka admin API failed or refused a change; retriable when Kafka says so (a
    leader election, a timeout), not for an invalid change."""

    code = "kafka_admin_failed"
