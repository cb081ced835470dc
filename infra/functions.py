"""The Lambda functions of the stack: what each one is, pure data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    packages: tuple[str, ...]  # project import packages copied into the zip
    requirements: tuple[str, ...]  # distributions vendored as manylinux wheels
    memory_mb: int = 512
    timeout_s: int = 30


GATEWAY = FunctionSpec(
    name="gateway",
    handler="functions.gateway.handler.handler",
    packages=("bus", "functions"),
    requirements=("aiokafka", "cryptography", "fastapi", "mangum", "opentelemetry-api", "pydantic"),
)

FUNCTIONS = (GATEWAY,)
