"""The MSK Serverless cluster a stack creates (``DeploySettings.create_cluster``): its
bootstrap servers, which CloudFormation does not give (boto3 adapter; real AWS only, the
emulator has no such cluster)."""

from __future__ import annotations

from infra.deploy import aws as deploy
from infra.settings import Settings
from infra.stack.parts.cluster import OUTPUT


def cluster_bootstrap(settings: Settings, outputs: dict[str, str]) -> str | None:
    """The IAM bootstrap servers of the stack's cluster, or None when it created none."""
    arn = outputs.get(OUTPUT)
    if arn is None:
        return None
    kafka = deploy.client(settings, "kafka")
    with deploy.aws_errors(settings, "MSK bootstrap servers"):
        answer = kafka.get_bootstrap_brokers(ClusterArn=arn)
    servers = answer.get("BootstrapBrokerStringSaslIam")
    return str(servers) if servers else None
