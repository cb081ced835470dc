"""The deploy pipeline: keys, traffic rules, the policy bundle, packaging, upload and the
change-set deploy of the stack (``meshgate deploy``, and the deploy step of ``meshgate up``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from botocore.exceptions import ClientError

from bus.policy.model import Policy
from infra.deploy import aws as deploy
from infra.deploy import msk, package
from infra.deploy.validators import write_validators
from infra.keys import dev_issuer, identity, pepper
from infra.keys.issuer_url import with_jwks_resolved
from infra.policy import access_map, load_policy, operators_of, services_of, traffic_document
from infra.settings import Settings
from infra.stack import function_env, template
from infra.stack.deploy_settings import DeploySettings
from infra.stack.functions import FUNCTIONS, GATEWAY, POLICY_BUNDLE, FunctionSpec, for_access
from infra.stack.model import MeshConfig

Say = Callable[[str], None]


def policy_file(settings: Settings) -> Path:
    """The policies: every ``policies/*.yaml``, merged."""
    return settings.root / "policies"


def mesh_config(settings: Settings, say: Say) -> MeshConfig:
    """Ensure every service and operator has a signing key; the public keyring and access
    map. An operator's key is in the keyring as its own (never a service's): receivers admit
    its countersignatures only where the access map's ``replay`` says."""
    services = services_of(policy_file(settings)) + operators_of(policy_file(settings))
    keyring = identity.ensure_keys(settings, services, say)
    access = access_map(policy_file(settings))
    identity.write_local_identity(settings, keyring, access)
    identity.publish_keyring(settings, keyring, say)  # what running processes reload
    return MeshConfig(keyring=keyring.to_dict(), access=access)


def publish_traffic(settings: Settings, say: Say) -> None:
    """Write the policies' traffic rules where the functions reload them from (SSM)."""
    name = function_env.traffic_parameter(settings)
    document = json.dumps(traffic_document(policy_file(settings)), sort_keys=True,
                          separators=(",", ":"))
    ssm = deploy.client(settings, "ssm")
    with deploy.aws_errors(settings, "traffic rules"):
        try:
            current = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise
            current = None
        if current == document:
            say(f"traffic rules {name}: no changes")
            return
        ssm.put_parameter(Name=name, Value=document, Type="String", Overwrite=True)
        say(f"traffic rules {name}: {len(json.loads(document))} operation(s) published")


def deploy_stack(settings: Settings, say: Say,
                 deploy_settings: DeploySettings | None = None) -> str:
    """Keys, traffic rules, package, upload and deploy; returns the HTTP endpoint.
    ``deploy_settings``: the AWS side (default: ``MESHGATE_DEPLOY_*``), checked first."""
    aws_side = deploy_settings or DeploySettings.resolve()
    mesh = mesh_config(settings, say)
    pepper.ensure_pepper(settings, say)  # the API-key pepper the gateway and authorizer read
    publish_traffic(settings, say)
    dev_issuer.ensure(settings, say)  # local JWT issuer's JWKS on the emulator's S3
    bundle = bundle_for_functions(settings, settings.build_dir)
    artifacts: dict[str, package.Artifact] = {}
    for base in FUNCTIONS:
        # on MSK with IAM the Kafka clients need the token signer in their zips
        spec = for_access(base, msk_iam=aws_side.kafka_access == "msk-iam")
        artifact = artifacts[spec.name] = package.build(spec, settings, bundle.files_for(spec))
        say(f"built {artifact.path.name} ({artifact.path.stat().st_size / 1e6:.1f} MB, "
            f"sha256 {artifact.sha256[:12]})")
    deploy.upload(settings, list(artifacts.values()), say)
    gateway = artifacts.pop(GATEWAY.name)
    body = template.render(template.stack_template(gateway, settings, mesh, artifacts,
                                                   aws_side))
    result = deploy.deploy_template(settings, body, say)
    bootstrap = msk.cluster_bootstrap(settings, result.outputs)
    if bootstrap is not None and bootstrap != settings.kafka_bootstrap:
        # The cluster the stack created is up now: tell every function where it is.
        say(f"cluster bootstrap servers: {bootstrap} (deploying them to the functions; "
            f"set MESHGATE_KAFKA_BOOTSTRAP={bootstrap} for 'meshgate policy apply')")
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        body = template.render(template.stack_template(gateway, settings, mesh, artifacts,
                                                       aws_side))
        result = deploy.deploy_template(settings, body, say)
    return template.endpoint_url(settings, result.outputs["ApiId"])


def load_bundle(bundled: Path) -> Policy:
    """The bundled policy as the functions read it (``Policy.from_json``)."""
    return Policy.from_json(bundled.read_bytes())


class Bundle(NamedTuple):
    """What the functions' zips get beside their code: the merged policy and the routes'
    checks generated from it (``infra.deploy.validators``)."""

    policy: Path
    checks: list[tuple[str, Path]]

    def files_for(self, spec: FunctionSpec) -> list[tuple[str, Path]]:
        """(name in the zip, file) of what ``spec``'s zip gets."""
        return ([(POLICY_BUNDLE, self.policy)] if spec.bundles_policy else []) + (
            self.checks if spec.bundles_validators else [])


def bundle_for_functions(settings: Settings, folder: Path) -> Bundle:
    """The policy bundled under ``folder``, and the routes' checks generated from it."""
    bundled = bundle_policy_to(settings, folder / POLICY_BUNDLE)
    return Bundle(bundled, write_validators(load_bundle(bundled), folder / "validators"))


def bundle_policy(settings: Settings) -> Path:
    """The merged policy as JSON (schema references inlined), bundled into the functions
    that serve routes: they read JSON at cold start, never YAML."""
    return bundle_policy_to(settings, settings.build_dir / POLICY_BUNDLE)


def bundle_policy_to(settings: Settings, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    # the dev issuer's JWKS URL points at the emulator in force (infra.keys.issuer_url)
    policy = with_jwks_resolved(load_policy(policy_file(settings)), settings.endpoint_url)
    target.write_text(policy.model_dump_json(exclude_defaults=True))
    return target
