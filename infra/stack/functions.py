"""The Lambda functions of the stack: what each one is, pure data."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    packages: tuple[str, ...]  # project import packages copied into the zip
    requirements: tuple[str, ...]  # distributions vendored as manylinux wheels
    memory_mb: int = 512
    timeout_s: int = 30
    bundles_policy: bool = False  # gets the merged policy as POLICY_BUNDLE at the zip's root
    # gets its routes' schema checks generated at deploy (infra.deploy.validators)
    bundles_validators: bool = False


# The merged policy's file name in a zip (the function's working directory in Lambda).
POLICY_BUNDLE = "meshgate-policy.json"


GATEWAY = FunctionSpec(
    name="gateway",
    handler="functions.gateway.handler.handler",
    packages=("bus", "functions"),
    requirements=("aiokafka", "cryptography", "fastapi", "fastjsonschema", "mangum",
                  "opentelemetry-api", "pydantic",
                  # libsodium's Ed25519 for the mesh's signatures (bus.security.ed25519)
                  "pynacl",
                  # imported on a request's first schema refusal (every violation in the 422)
                  "jsonschema_rs",
                  # imported only when OTEL_* asks for traces (functions/shared/otel_setup)
                  "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
    bundles_policy=True,
    bundles_validators=True,
)

# The Lambda authorizer (``functions/authorizer``): JWT from the bundled policy's edge.jwt,
# API keys from DynamoDB. boto3 is vendored: the emulator's Lambda workers lack it.
AUTHORIZER = FunctionSpec(
    name="authorizer",
    handler="functions.authorizer.handler.handler",
    packages=("bus", "functions"),
    requirements=("boto3", "cryptography", "opentelemetry-api", "pydantic", "pynacl"),
    memory_mb=256,
    timeout_s=10,
    bundles_policy=True,
)

FUNCTIONS: tuple[FunctionSpec, ...] = (GATEWAY, AUTHORIZER)

# Every service of the policy as a Lambda fed by Kafka event source mappings: one zip and one
# generic handler (``functions.kafka_service``), one function per service and subset
# (infra/stack/parts/services.py).
SERVICE_EVENTS = FunctionSpec(
    name="service-events",
    handler="functions.kafka_service.handler.handler",
    packages=("bus", "functions"),
    requirements=("aiokafka", "cryptography", "opentelemetry-api", "pydantic", "pynacl",
                  # imported only when OTEL_* asks for traces (functions/shared/otel_setup)
                  "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
)

FUNCTIONS = (*FUNCTIONS, SERVICE_EVENTS)

# The bench's echo Lambda (infra/stack/parts/bench_echo.py): the request body back, no dependencies.
BENCH_ECHO = FunctionSpec(
    name="bench-echo",
    handler="functions.bench_echo.handler.handler",
    packages=("functions/bench_echo",),
    requirements=(),
    memory_mb=128,
    timeout_s=10,
)

FUNCTIONS = (*FUNCTIONS, BENCH_ECHO)

# The functions with a Kafka client of their own, and what that client needs on MSK with IAM
# (bus.transport.msk_iam signs its SASL/OAUTHBEARER tokens with it): vendored only into a
# deploy with kafka_access=msk-iam, so the other zips stay as small as before.
KAFKA_CLIENTS = (GATEWAY.name, SERVICE_EVENTS.name)
MSK_IAM_REQUIREMENTS = ("aws-msk-iam-sasl-signer-python",)


def for_access(spec: FunctionSpec, *, msk_iam: bool) -> FunctionSpec:
    """``spec`` with what its Kafka client needs for the access mode."""
    if msk_iam and spec.name in KAFKA_CLIENTS:
        return replace(spec, requirements=(*spec.requirements, *MSK_IAM_REQUIREMENTS))
    return spec
