"""The whole local system, step by step: what ``meshgate up``, ``down`` and ``status`` do
(the deploy step is ``infra.deploy.pipeline``)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from infra import tui
from infra.deploy import aws as deploy
from infra.deploy.pipeline import deploy_stack, policy_file
from infra.errors import InfraError
from infra.kafka import topics
from infra.local import kafka_env, secure_mesh, smoke
from infra.local import workers as local
from infra.policy import topic_specs
from infra.policy.commands import acl_command
from infra.settings import Settings
from infra.stack import template

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


def emulator_reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """An external emulator (not started here) answers on its endpoint."""
    if settings.endpoint_url is None:
        return False
    try:
        with urllib.request.urlopen(settings.endpoint_url, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, with an error status: it is there
    except (OSError, urllib.error.URLError):
        return False


def provision_topics(settings: Settings) -> topics.TopicPlan:
    wanted = topic_specs(policy_file(settings))
    return asyncio.run(topics.apply_topics(settings.kafka_bootstrap, wanted))


def up(settings: Settings, say: Say, *, smoke_call: bool = True) -> dict[str, Any]:
    total = time.monotonic()
    with step(say, "Kafka broker"):
        local.run_script(settings, local.KAFKA_SCRIPT, "start", say)
    with step(say, "AWS emulator"):
        if settings.emulator_external:
            say(f"external emulator at {settings.endpoint_url}: not started here")
        else:
            local.run_script(settings, local.EMULATOR_SCRIPT, "start", say)
    with step(say, "topics"):
        plan = provision_topics(settings)
        created = [s.name for s in plan.create]
        say(f"created {', '.join(created)}" if created else "topics: no changes")
        for name, have, want in plan.grow:
            say(f"{name}: partitions {have} -> {want}")
    with step(say, "ACLs"):  # the broker's ACLs from the policy (meshgate policy apply)
        for line in acl_command(settings, apply=True):
            if not line.startswith(("+ ", "- ")):  # the sentences, not every ACL
                say(line)
    if kafka_env.secure(settings):
        with step(say, "Kafka users (SCRAM-SHA-512)"):
            principals = local.kafka_principals(settings)
            secure_mesh.ensure_users(settings, principals, say)
            secure_mesh.retire_removed(settings, principals, say)
    with step(say, "package and deploy"):
        endpoint = deploy_stack(settings, say)
    with step(say, "service workers"):
        for worker in local.workers(settings):
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
    for worker in local.workers(settings):
        local.stop_worker(settings, worker, say)
    if workers_only:
        return
    if not settings.emulator_external:  # someone else's emulator: theirs to stop
        local.run_script(settings, local.EMULATOR_SCRIPT, "stop", say)
    local.run_script(settings, local.KAFKA_SCRIPT, "stop", say)


def listeners(settings: Settings) -> dict[str, str]:
    """The local broker's client listeners (``localstack/kafka/kafka.sh``) by protocol."""
    secure_port = int(settings.secure_bootstrap.split(",")[0].rsplit(":", 1)[1])
    return {"PLAINTEXT": settings.kafka_bootstrap, "SASL_SSL": settings.secure_bootstrap,
            "SSL": f"127.0.0.1:{secure_port + 1}"}


def status(settings: Settings) -> dict[str, Any]:
    quiet: Say = lambda _line: None  # noqa: E731
    kafka_up = local.run_script(settings, local.KAFKA_SCRIPT, "status", quiet)
    emulator_up = (emulator_reachable(settings) if settings.emulator_external
                   else local.run_script(settings, local.EMULATOR_SCRIPT, "status", quiet))
    endpoint = authorized_endpoint = None
    if emulator_up or not settings.is_local:
        try:
            outputs = deploy.stack_outputs(settings)
        except InfraError:
            outputs = None
        if outputs and "ApiId" in outputs:
            endpoint = template.endpoint_url(settings, outputs["ApiId"])
        if outputs and "AuthorizedApiId" in outputs:  # infra.stack.parts.authorized_edge
            authorized_endpoint = template.endpoint_url(settings, outputs["AuthorizedApiId"])
    return {
        "endpoint": endpoint,
        "authorized_endpoint": authorized_endpoint,
        "kafka": {"bootstrap": settings.kafka_bootstrap, "running": kafka_up,
                  "listeners": listeners(settings),
                  "mesh": settings.local_mesh_protocol},
        "emulator": {"url": settings.endpoint_url, "running": emulator_up},
        "workers": {w.name: local.worker_pid(settings, w) for w in local.workers(settings)},
    }
