"""``meshgate template`` and ``meshgate deploy --dry-run``: the rendered template, and the
changes a deploy would make, touching nothing.

The template is rendered with no emulator or account: the public keyring comes from the
local identity file the last deploy wrote (``.local/identity/keyring.json``), else from the
keys the policy publishes; the functions' zips are either built into a scratch folder (exact
S3 keys, ``package=True``) or named by placeholders. The changes compare the rendered
resources with the deployed template (``GetTemplate``; no change set is created, since
creating one writes to the account): added, removed and modified logical ids.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bus.security.keys import KeyRing
from infra.deploy import package
from infra.deploy.pipeline import bundle_for_functions, policy_file
from infra.policy import access_map, load_policy
from infra.settings import Settings
from infra.stack import template
from infra.stack.deploy_settings import DeploySettings
from infra.stack.functions import FUNCTIONS, GATEWAY, FunctionSpec, for_access
from infra.stack.model import MeshConfig

Say = Callable[[str], None]
PLACEHOLDER_SHA = "0" * 64  # an unbuilt zip: its S3 key says so
PROBE_TIMEOUT_S = 3


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified)

    def lines(self, rendered: Mapping[str, Any], deployed: Mapping[str, Any]) -> list[str]:
        def kind(resources: Mapping[str, Any], logical_id: str) -> str:
            return str(resources[logical_id].get("Type", "?"))

        return ([f"Add {r} ({kind(rendered, r)})" for r in self.added]
                + [f"Modify {r} ({kind(rendered, r)}: "
                   f"{', '.join(changed_properties(rendered[r], deployed[r]))})"
                   for r in self.modified]
                + [f"Remove {r} ({kind(deployed, r)})" for r in self.removed])


def changed_properties(rendered: Mapping[str, Any], deployed: Mapping[str, Any]) -> list[str]:
    """The top-level properties (or ``Type``) that differ between two versions of a resource."""
    if rendered.get("Type") != deployed.get("Type"):
        return ["Type"]
    new, old = rendered.get("Properties", {}), deployed.get("Properties", {})
    return sorted(name for name in set(new) | set(old)
                  if json.dumps(new.get(name), sort_keys=True)
                  != json.dumps(old.get(name), sort_keys=True)) or ["attributes"]


def compare(rendered: Mapping[str, Any], deployed: Mapping[str, Any]) -> Changes:
    """Resources by logical id (pure): what a deploy of ``rendered`` over ``deployed`` adds,
    removes and modifies (any difference in type or properties)."""
    def canonical(resource: Any) -> str:
        return json.dumps(resource, sort_keys=True)

    return Changes(
        added=tuple(sorted(set(rendered) - set(deployed))),
        removed=tuple(sorted(set(deployed) - set(rendered))),
        modified=tuple(sorted(r for r in set(rendered) & set(deployed)
                              if canonical(rendered[r]) != canonical(deployed[r]))),
    )


def offline_mesh(settings: Settings) -> MeshConfig:
    """The mesh configuration without any AWS call (see the module doc)."""
    keyring_file = settings.local_dir / "identity" / "keyring.json"
    if keyring_file.is_file():
        keyring = json.loads(keyring_file.read_text())
    else:
        keyring = load_policy(policy_file(settings)).keyring().to_dict()
    KeyRing.from_dict(keyring)  # refuse a damaged file here, not in a deployed function
    return MeshConfig(keyring=keyring, access=access_map(policy_file(settings)))


def placeholder(spec: FunctionSpec, settings: Settings) -> package.Artifact:
    return package.Artifact(spec, settings.build_dir / f"{spec.name}.zip", PLACEHOLDER_SHA)


def artifacts(settings: Settings, deploy: DeploySettings, *, build: bool,
              scratch: Path) -> dict[str, package.Artifact]:
    """Every function's artifact: built into ``scratch`` (exact keys) or placeholders."""
    if not build:
        return {spec.name: placeholder(spec, settings) for spec in FUNCTIONS}
    bundle = bundle_for_functions(settings, scratch)
    specs = [for_access(spec, msk_iam=deploy.kafka_access == "msk-iam") for spec in FUNCTIONS]
    return {spec.name: package.build(spec, settings, bundle.files_for(spec), target_dir=scratch)
            for spec in specs}


def render(settings: Settings, deploy: DeploySettings | None = None, *,
           build: bool = False) -> dict[str, Any]:
    """The template a deploy would send, rendered with no AWS call."""
    deploy = deploy or DeploySettings.resolve()
    with tempfile.TemporaryDirectory(prefix="meshgate-dry-run-") as scratch:
        built = artifacts(settings, deploy, build=build, scratch=Path(scratch))
    gateway = built.pop(GATEWAY.name)
    return template.stack_template(gateway, settings, offline_mesh(settings), built, deploy)


def deployed_template(settings: Settings) -> dict[str, Any] | None:
    """The stack's current template, or None when no stack of that name exists. Quick to
    give up: one attempt, a short connect timeout (``NotReachable``-like errors are the
    caller's to report)."""
    session = boto3.session.Session()
    cfn = session.client(
        "cloudformation", **settings.aws_client_args(),
        config=Config(connect_timeout=PROBE_TIMEOUT_S, read_timeout=10,
                      retries={"max_attempts": 1, "mode": "standard"}))
    try:
        body = cfn.get_template(StackName=settings.stack_name,
                                TemplateStage="Original")["TemplateBody"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return body if isinstance(body, dict) else dict(json.loads(body))


def report_changes(settings: Settings, rendered: Mapping[str, Any], say: Say) -> Changes | None:
    """Say what a deploy would change; None when there is nothing to compare with."""
    where = settings.endpoint_url or "AWS"
    try:
        deployed = deployed_template(settings)
    except (BotoCoreError, ClientError) as exc:
        why = (f"no credentials for {where}" if isinstance(exc, NoCredentialsError)
               else f"{where} does not answer ({type(exc).__name__})")
        say(f"changes: not computed: {why}; the template above is what a deploy would send")
        return None
    if deployed is None:
        say(f"changes: no stack {settings.stack_name} at {where}: "
            f"a deploy creates all {len(rendered['Resources'])} resources")
        return None
    changes = compare(rendered["Resources"], deployed.get("Resources", {}))
    lines = changes.lines(rendered["Resources"], deployed.get("Resources", {}))
    say(f"changes: stack {settings.stack_name} at {where}: "
        + (f"{len(lines)} resource(s) would change" if lines else "none"))
    for line in lines:
        say(f"  {line}")
    return changes
