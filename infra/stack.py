"""The whole local system, step by step: what ``meshgate up``, ``down`` and ``status`` do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from infra import deploy, local, package, smoke, template
from infra.cli import tui
from infra.errors import InfraError
from infra.functions import FUNCTIONS, GATEWAY, POLICY_BUNDLE
from infra.kafka import topics
from infra.keys import dev_issuer, identity, pepper
from infra.policy import (
    access_map,
    load_policy,
    operators_of,
    services_of,
    topic_specs,
    traffic_document,
)
from infra.settings import Settings

Say = Callable[[str], None]


@contextmanager
def step(say: Say, title: str) -> Iterator[None]:
    if isinstance(say, tui.RichSay):  # a terminal: a spinner, then a tick and the time
        with say.step(title):
            yield
        return
    say(f"==> {title}")
    started = time.monotonic()
    yield
    say(f"    done in {time.monotonic() - started:.1f}s")


def provision_topics(settings: Settings) -> topics.TopicPlan:
    wanted = topic_specs(policy_file(settings))
    return asyncio.run(topics.apply_topics(settings.kafka_bootstrap, wanted))


def policy_file(settings: Settings) -> Path:
    """The policies: every ``policies/*.yaml``, merged."""
    return settings.root / "policies"


def mesh_config(settings: Settings, say: Say) -> template.MeshConfig:
    """Ensure every service and operator has a signing key; the public keyring and access
    map. An operator's key is in the keyring as its own (never a service's): receivers admit
    its countersignatures only where the access map's ``replay`` says."""
    services = services_of(policy_file(settings)) + operators_of(policy_file(settings))
    keyring = identity.ensure_keys(settings, services, say)
    access = access_map(policy_file(settings))
    identity.write_local_identity(settings, keyring, access)
    identity.publish_keyring(settings, keyring, say)  # what running processes reload
    return template.MeshConfig(keyring=keyring.to_dict(), access=access)


def publish_traffic(settings: Settings, say: Say) -> None:
    """Write the policies' traffic rules where the functions reload them from (SSM)."""
    name = template.traffic_parameter(settings)
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


def deploy_stack(settings: Settings, say: Say) -> str:
    """Keys, traffic rules, package, upload and deploy; returns the HTTP endpoint."""
    mesh = mesh_config(settings, say)
    pepper.ensure_pepper(settings, say)  # the API-key pepper the gateway and authorizer read
    publish_traffic(settings, say)
    dev_issuer.ensure(settings, say)  # local JWT issuer's JWKS on the emulator's S3
    bundled = bundle_policy(settings)
    artifacts: dict[str, package.Artifact] = {}
    for spec in FUNCTIONS:
        extra = [(POLICY_BUNDLE, bundled)] if spec.bundles_policy else []
        artifact = artifacts[spec.name] = package.build(spec, settings, extra)
        say(f"built {artifact.path.name} ({artifact.path.stat().st_size / 1e6:.1f} MB, "
            f"sha256 {artifact.sha256[:12]})")
    deploy.upload(settings, list(artifacts.values()), say)
    gateway = artifacts.pop(GATEWAY.name)
    body = template.render(template.stack_template(gateway, settings, mesh, artifacts))
    result = deploy.deploy_template(settings, body, say)
    return template.endpoint_url(settings, result.outputs["ApiId"])


def bundle_policy(settings: Settings) -> Path:
    """The merged policy as JSON (schema references inlined), bundled into the functions
    that serve routes: they read JSON at cold start, never YAML."""
    target = settings.build_dir / POLICY_BUNDLE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(load_policy(policy_file(settings)).model_dump_json(exclude_defaults=True))
    return target


def up(settings: Settings, say: Say, *, smoke_call: bool = True) -> dict[str, Any]:
    total = time.monotonic()
    with step(say, "Kafka broker"):
        local.run_script(settings, local.KAFKA_SCRIPT, "start", say)
    with step(say, "AWS emulator"):
        local.run_script(settings, local.EMULATOR_SCRIPT, "start", say)
    with step(say, "topics"):
        plan = provision_topics(settings)
        created = [s.name for s in plan.create]
        say(f"created {', '.join(created)}" if created else "topics: no changes")
        for name, have, want in plan.grow:
            say(f"{name}: partitions {have} -> {want}")
    with step(say, "package and deploy"):
        endpoint = deploy_stack(settings, say)
    with step(say, "service workers"):
        for worker in local.WORKERS:
            local.start_worker(settings, worker, say)
    result: dict[str, Any] = {"endpoint": endpoint}
    if smoke_call:
        with step(say, "demo call through the HTTP endpoint"):
            result["demo"] = smoke.demo_call(endpoint)
            say(f"answer: {result['demo']}")
    say(f"meshgate is up in {time.monotonic() - total:.1f}s")
    say(f"endpoint: {endpoint}")
    say(smoke.curl_line(endpoint))
    for line in smoke.more_lines(endpoint):
        say(line)
    return result


def down(settings: Settings, say: Say, *, workers_only: bool = False) -> None:
    for worker in local.WORKERS:
        local.stop_worker(settings, worker, say)
    if workers_only:
        return
    local.run_script(settings, local.EMULATOR_SCRIPT, "stop", say)
    local.run_script(settings, local.KAFKA_SCRIPT, "stop", say)


def status(settings: Settings) -> dict[str, Any]:
    quiet: Say = lambda _line: None  # noqa: E731
    kafka_up = local.run_script(settings, local.KAFKA_SCRIPT, "status", quiet)
    emulator_up = local.run_script(settings, local.EMULATOR_SCRIPT, "status", quiet)
    endpoint = authorized_endpoint = None
    if emulator_up or not settings.is_local:
        try:
            outputs = deploy.stack_outputs(settings)
        except InfraError:
            outputs = None
        if outputs and "ApiId" in outputs:
            endpoint = template.endpoint_url(settings, outputs["ApiId"])
        if outputs and "AuthorizedApiId" in outputs:  # infra.part_authorized_edge
            authorized_endpoint = template.endpoint_url(settings, outputs["AuthorizedApiId"])
    return {
        "endpoint": endpoint,
        "authorized_endpoint": authorized_endpoint,
        "kafka": {"bootstrap": settings.kafka_bootstrap, "running": kafka_up},
        "emulator": {"url": settings.endpoint_url, "running": emulator_up},
        "workers": {w.name: local.worker_pid(settings, w) for w in local.WORKERS},
    }
