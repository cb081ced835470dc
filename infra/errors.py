"""The error hierarchy of ``infra``: each error is one line a person can act on."""

from __future__ import annotations

from typing import ClassVar


class InfraError(Exception):
    retriable: ClassVar[bool] = False

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.what = what
        self.fix = fix


class NotReachable(InfraError):
    """A service (broker, emulator, endpoint) does not answer."""

    retriable = True


class DeployFailed(InfraError):
    """CloudFormation refused or rolled back a change."""


class PackagingFailed(InfraError):
    """A function's zip could not be built."""


class ProcessFailed(InfraError):
    """A local process (script, worker) failed to start or stop."""
