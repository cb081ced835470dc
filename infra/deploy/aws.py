"""Deploy the stack through CloudFormation change sets (boto3 adapter).

Works against the emulator and, unchanged but for endpoint and credentials, against AWS.
A change set with no changes is deleted and reported as such: deploying twice is a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from functions.shared.dynamodb import transient
from infra.deploy.package import Artifact
from infra.errors import DeployFailed, NotReachable
from infra.settings import Settings

Say = Callable[[str], None]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
POLL_S = 0.5
CHANGE_SET_TIMEOUT_S = 120.0
STACK_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class DeployResult:
    changes: tuple[str, ...]
    outputs: dict[str, str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@contextmanager
def aws_errors(settings: Settings, what: str) -> Iterator[None]:
    try:
        yield
    except EndpointConnectionError as exc:
        where = settings.endpoint_url or "AWS"
        raise NotReachable(
            f"{what}: the AWS endpoint {where} does not answer",
            "start the emulator with 'make up' (or localstack/ministack/ministack.sh start)",
        ) from exc
    except (ClientError, BotoCoreError) as exc:
        # throttled, a 5xx, a dropped connection: retriable; a refused change: not
        raise DeployFailed(f"{what}: {exc}", "see the message above; nothing was changed",
                           retriable=transient(exc)) from exc


def client(settings: Settings, service: str) -> Any:
    session = boto3.session.Session()
    return session.client(service, **settings.aws_client_args())  # type: ignore[call-overload]


def upload(settings: Settings, artifacts: list[Artifact], say: Say) -> None:
    s3 = client(settings, "s3")
    with aws_errors(settings, "upload"):
        try:
            s3.head_bucket(Bucket=settings.artifact_bucket)
        except ClientError:
            args: dict[str, Any] = {"Bucket": settings.artifact_bucket}
            if settings.region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
            s3.create_bucket(**args)
            say(f"created bucket {settings.artifact_bucket}")
        for artifact in artifacts:
            try:
                s3.head_object(Bucket=settings.artifact_bucket, Key=artifact.key)
                continue
            except ClientError:
                pass
            s3.put_object(
                Bucket=settings.artifact_bucket, Key=artifact.key, Body=artifact.path.read_bytes()
            )
            size_mb = artifact.path.stat().st_size / 1e6
            say(f"uploaded {artifact.key} ({size_mb:.1f} MB)")


def _stack_status(cfn: Any, name: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _wait(what: str, timeout_s: float, poll: Callable[[], Any | None]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = poll()
        if result is not None:
            return result
        time.sleep(POLL_S)
    raise DeployFailed(f"{what} did not finish in {timeout_s:g}s", "check the stack's events")


def describe_change(change: dict[str, Any]) -> str:
    rc = change["ResourceChange"]
    replacement = " (replacement)" if rc.get("Replacement") == "True" else ""
    return f"{rc['Action']} {rc['LogicalResourceId']} ({rc['ResourceType']}){replacement}"


def _failure_reasons(cfn: Any, name: str) -> str:
    events = cfn.describe_stack_events(StackName=name).get("StackEvents", [])
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("FAILED")
    ]
    return "; ".join(reasons[:3]) or "no reason given"


def deploy_template(settings: Settings, body: str, say: Say) -> DeployResult:
    cfn = client(settings, "cloudformation")
    name = settings.stack_name
    with aws_errors(settings, "deploy"):
        status = _stack_status(cfn, name)
        if status == "ROLLBACK_COMPLETE":
            say(f"stack {name} is in ROLLBACK_COMPLETE from a failed create; deleting it first")
            cfn.delete_stack(StackName=name)
            _wait("delete", STACK_TIMEOUT_S, lambda: True if _stack_status(cfn, name) in
                  (None, "DELETE_COMPLETE") else None)
            status = None
        kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS", "DELETE_COMPLETE") else "UPDATE"
        change_set = cfn.create_change_set(
            StackName=name,
            TemplateBody=body,
            ChangeSetName=f"meshgate-{int(time.time() * 1000)}",
            ChangeSetType=kind,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )

        def described() -> dict[str, Any] | None:
            d: dict[str, Any] = cfn.describe_change_set(ChangeSetName=change_set["Id"])
            return d if d["Status"] in ("CREATE_COMPLETE", "FAILED") else None

        result = _wait("change set", CHANGE_SET_TIMEOUT_S, described)
        if result["Status"] == "FAILED":
            reason = str(result.get("StatusReason", ""))
            cfn.delete_change_set(ChangeSetName=change_set["Id"])
            if any(marker in reason for marker in NO_CHANGES):
                say(f"stack {name}: no changes")
                return DeployResult((), _outputs(cfn, name))
            raise DeployFailed(f"change set for {name} failed: {reason}", "fix the template")
        changes = tuple(describe_change(c) for c in result.get("Changes", []))
        for line in changes:
            say(f"  {line}")
        cfn.execute_change_set(ChangeSetName=change_set["Id"])

        def settled() -> str | None:
            s = _stack_status(cfn, name)
            return s if s and not s.endswith("IN_PROGRESS") else None

        final = _wait(f"stack {name}", STACK_TIMEOUT_S, settled)
        if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            raise DeployFailed(
                f"stack {name} ended {final}: {_failure_reasons(cfn, name)}",
                "fix the cause and deploy again",
            )
        say(f"stack {name}: {final} ({len(changes)} changes)")
        return DeployResult(changes, _outputs(cfn, name))


def _outputs(cfn: Any, name: str) -> dict[str, str]:
    stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def stack_outputs(settings: Settings) -> dict[str, str] | None:
    """The stack's outputs, or None when the stack is not deployed."""
    cfn = client(settings, "cloudformation")
    with aws_errors(settings, "describe stack"):
        if _stack_status(cfn, settings.stack_name) in (None, "DELETE_COMPLETE"):
            return None
        return _outputs(cfn, settings.stack_name)
