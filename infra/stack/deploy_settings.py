"""Typed settings of the AWS side of a deploy: how the services' Lambdas reach Kafka (access
mode, network, an optional MSK Serverless cluster) and how their event source mappings
deliver batches. An explicit argument wins over ``MESHGATE_DEPLOY_<FIELD upper>``, which wins
over the default (lists are comma-separated: ``MESHGATE_DEPLOY_SUBNET_IDS=subnet-a,subnet-b``).

Access modes (``kafka_access``):

- ``self-managed``: any Kafka at ``MESHGATE_KAFKA_BOOTSTRAP``; the mapping authenticates with
  the service's SASL/SCRAM-512 secret (``scram_secret_name``) when ``scram`` is on, reaches
  private brokers through ``subnet_ids``/``security_group_ids`` and trusts
  ``root_ca_secret_arn`` when given. The emulator's default (no authentication, no VPC).
- ``msk-iam``: an MSK cluster (``msk_cluster_arn``, or the one ``create_cluster`` makes)
  with IAM access control; each function's role gets ``kafka-cluster:*`` rights on exactly
  its own topics and consumer group.
- ``msk-scram``: an MSK cluster with SASL/SCRAM; MSK only takes secrets named
  ``AmazonMSK_*`` (encrypted with a customer managed KMS key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.errors import InfraError

ENV_PREFIX = "MESHGATE_DEPLOY_"
KafkaAccess = Literal["self-managed", "msk-iam", "msk-scram"]
StartingPosition = Literal["LATEST", "TRIM_HORIZON"]
# "queue": a failed-batch SQS queue per service in the stack; "none": no destination;
# otherwise an ARN (SQS, SNS, S3) or "kafka://<topic>".
FAILURE_QUEUE = "queue"
NO_DESTINATION = "none"
SCRAM_SECRET_DEFAULT = "/{stack}/kafka/scram/{service}"  # the local broker's convention
MSK_SCRAM_SECRET_DEFAULT = "AmazonMSK_{stack}_{service}"  # MSK requires the prefix
EC2_ID = "([0-9a-f]{8}|[0-9a-f]{17})"  # what AWS (and cfn-lint) take after vpc-, subnet-, sg-


class DeploySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_access: KafkaAccess = "self-managed"
    # SASL/SCRAM-512 for the self-managed mapping and the functions' own clients.
    scram: bool = False
    # Secret per service; {stack} and {service} are replaced. Default by mode (see above).
    scram_secret_name: str | None = None
    root_ca_secret_arn: str | None = Field(default=None, pattern=r"^arn:")
    msk_cluster_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kafka:")
    create_cluster: bool = False  # an MSK Serverless cluster (IAM) in the stack
    vpc_id: str | None = Field(default=None, pattern=rf"^vpc-{EC2_ID}$")
    subnet_ids: tuple[Annotated[str, Field(pattern=rf"^subnet-{EC2_ID}$")], ...] = ()
    security_group_ids: tuple[Annotated[str, Field(pattern=rf"^sg-{EC2_ID}$")], ...] = ()
    # The event source mappings.
    batch_size: int = Field(default=100, ge=1, le=10_000)
    batching_window_s: int = Field(default=0, ge=0, le=300)  # requests wait: hold nothing
    starting_position: StartingPosition = "LATEST"
    partial_batch_responses: bool = True  # ReportBatchItemFailures
    on_failure: str = Field(default=FAILURE_QUEUE,
                            pattern=r"^(queue|none|kafka://[A-Za-z0-9._-]+|arn:aws[a-z-]*:(sqs|sns|s3):.+)$")
    min_pollers: int = Field(default=1, ge=1, le=200)
    max_pollers: int = Field(default=2, ge=1, le=2_000)

    @field_validator("subnet_ids", "security_group_ids", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        if self.create_cluster:
            if self.kafka_access != "msk-iam":
                raise ValueError("create_cluster makes an MSK Serverless cluster, which only "
                                 "takes IAM: set kafka_access=msk-iam")
            if self.msk_cluster_arn is not None:
                raise ValueError("create_cluster and msk_cluster_arn: choose one")
            if self.vpc_id is None or len(self.subnet_ids) < 2:
                raise ValueError("create_cluster needs vpc_id and at least two subnet_ids "
                                 "(in different availability zones)")
        elif self.kafka_access != "self-managed" and self.msk_cluster_arn is None:
            raise ValueError(f"kafka_access={self.kafka_access} needs msk_cluster_arn "
                             "(or create_cluster)")
        if bool(self.subnet_ids) != bool(self.security_group_ids) and not self.create_cluster:
            raise ValueError("subnet_ids and security_group_ids go together (private brokers)")
        if self.min_pollers > self.max_pollers:
            raise ValueError("min_pollers is above max_pollers")
        if self.kafka_access == "msk-scram" and self.scram_secret_name is not None \
                and not self.scram_secret_name.startswith("AmazonMSK_"):
            raise ValueError("MSK only reads SCRAM secrets named AmazonMSK_*")
        return self

    @property
    def uses_scram(self) -> bool:
        return self.kafka_access == "msk-scram" or (self.kafka_access == "self-managed"
                                                    and self.scram)

    @property
    def private(self) -> bool:
        """The brokers are in a VPC: every function that talks to Kafka joins it."""
        return bool(self.subnet_ids) or self.create_cluster

    def secret_name(self, stack: str, service: str) -> str:
        """The service's SCRAM secret (``{"username", "password"}`` JSON)."""
        template = self.scram_secret_name or (
            MSK_SCRAM_SECRET_DEFAULT if self.kafka_access == "msk-scram"
            else SCRAM_SECRET_DEFAULT)
        return template.format(stack=stack, service=service)

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **explicit: Any) -> DeploySettings:
        """Explicit over ``MESHGATE_DEPLOY_*`` over default; ``DeploySettingsInvalid`` names
        every refused setting on one line."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = source.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in explicit.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper() or 'SETTINGS'}: {e['msg']}"
                for e in exc.errors())
            raise DeploySettingsInvalid(f"deploy settings refused: {problems}",
                                        "fix the MESHGATE_DEPLOY_* variables") from None


class DeploySettingsInvalid(InfraError):
    """A ``MESHGATE_DEPLOY_*`` setting (or a combination) that no deploy could use."""
