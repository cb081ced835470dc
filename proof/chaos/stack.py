"""Infrastructure of a chaos run: private brokers and emulators (own ports and data dirs,
started and stopped with the project's scripts), topics, idempotency tables, identities and
a consumer group's state. Every wait is bounded; whatever is started here is stopped in
``finally``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus.security.access import AccessPolicy
from bus.security.identity import Identity
from bus.security.keys import KeyRing, generate_ed25519
from bus.security.quarantine import QUARANTINE_TOPIC
from infra.deploy.aws import client
from infra.kafka.connect import door_kwargs
from infra.settings import Settings
from infra.stack.tables import idempotency_table
from proof.procs import ROOT, free_port
from proof.tables import scratch_table

KAFKA_SCRIPT = ROOT / "localstack" / "kafka" / "kafka.sh"
EMULATOR_SCRIPT = ROOT / "localstack" / "ministack" / "ministack.sh"
CALLER = "chaos-caller"
REPLY_TOPIC = "mesh.replies"


class StackError(RuntimeError):
    """A private broker or emulator, a topic or a table could not be set up."""


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    output: str


async def run_script(script: Path, args: str | Sequence[str], env: Mapping[str, str],
                     timeout_s: float) -> ScriptResult:
    """``bash script ARGS`` with ``env`` over ours; killed after ``timeout_s``."""
    words = [args] if isinstance(args, str) else list(args)
    process = await asyncio.create_subprocess_exec(
        "bash", str(script), *words, env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), 10)
        return ScriptResult(-1, f"{script.name} {' '.join(words)}: no answer within "
                                f"{timeout_s:g}s")
    return ScriptResult(process.returncode or 0, out.decode(errors="replace").strip())


@dataclass(frozen=True)
class Private:
    """A private broker or emulator: its script and the environment that makes it private."""

    script: Path
    env: dict[str, str]
    address: str

    async def start(self) -> ScriptResult:
        return await run_script(self.script, "start", self.env, 150)

    async def stop(self) -> ScriptResult:
        return await run_script(self.script, "stop", self.env, 60)


@asynccontextmanager
async def private(kind: str, workdir: Path,
                  env: Mapping[str, str] | None = None) -> AsyncIterator[Private]:
    """A private ``kafka`` or ``emulator`` on free ports, data under ``workdir`` (``env``: more
    settings of its script); always stopped afterwards."""
    port = free_port()
    if kind == "kafka":
        instance = Private(KAFKA_SCRIPT, {
            "KAFKA_PORT": str(port), "KAFKA_STATE_DIR": str(workdir / "kafka"),
            "KAFKA_HEAP": "512m", **(env or {})}, f"127.0.0.1:{port}")
    else:
        instance = Private(EMULATOR_SCRIPT, {
            "MINISTACK_PORT": str(port), "MINISTACK_STATE_DIR": str(workdir / "ministack"),
            **(env or {})}, f"http://127.0.0.1:{port}")
    try:
        started = await instance.start()
        if started.returncode != 0:
            raise StackError(f"private {kind} did not start: {started.output}")
        yield instance
    finally:
        await instance.stop()


@asynccontextmanager
async def topics(bootstrap: str, specs: Mapping[str, int]) -> AsyncIterator[None]:
    """Create ``specs`` (topic -> partitions) if missing; delete those created afterwards."""
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    await asyncio.wait_for(admin.start(), 30)
    created: list[str] = []
    try:
        existing = set(await asyncio.wait_for(admin.list_topics(), 30))
        new = [NewTopic(name, parts, 1) for name, parts in specs.items() if name not in existing]
        if new:
            await asyncio.wait_for(admin.create_topics(new), 30)
            created = [t.name for t in new]
        yield
    finally:
        if created:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.delete_topics(created), 30)
        await admin.close()


def mesh_topics(service: str, partitions: int) -> dict[str, int]:
    """What a private broker needs for ``service`` (the shared one has the last two)."""
    return {f"{service}.requests": partitions, REPLY_TOPIC: 4, QUARANTINE_TOPIC: 1}


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The consumer group's state and member count."""
    admin = AIOKafkaAdminClient(**door_kwargs(bootstrap))
    await asyncio.wait_for(admin.start(), 30)
    try:
        answer = await asyncio.wait_for(admin.describe_consumer_groups([group]), 30)
        state = answer[0].to_object()["groups"][0]
        return str(state["state"]), len(state["members"])
    finally:
        await admin.close()


async def group_stable(bootstrap: str, group: str, members: int, timeout_s: float) -> None:
    """Wait until ``group`` is ``Stable`` with ``members`` members."""
    async with asyncio.timeout(timeout_s):
        while await group_state(bootstrap, group) != ("Stable", members):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


def identities(service: str) -> dict[str, Identity]:
    """Fresh Ed25519 keys for the caller and ``service``, one keyring, the access map."""
    produce = produce_map(service)
    keys = {name: generate_ed25519(name) for name in produce}
    keyring = KeyRing(verify for _, verify in keys.values())
    access = AccessPolicy.from_dict(produce)
    return {name: Identity(name, signing, keyring, access)
            for name, (signing, _) in keys.items()}


def produce_map(service: str) -> dict[str, list[str]]:
    return {CALLER: [f"{service}.requests"], service: [REPLY_TOPIC, QUARANTINE_TOPIC]}


def identity_env(identity: Identity, service: str) -> dict[str, str]:
    """``MESH_*`` variables that make a worker process ``identity`` (``load_identity``)."""
    assert identity.signing_key is not None
    assert identity.keyring is not None
    return {
        "MESH_SERVICE_NAME": service,
        "MESH_SIGNING_KEY": base64.b64encode(identity.signing_key.secret).decode(),
        "MESH_KEYRING_JSON": json.dumps(identity.keyring.to_dict()),
        "MESH_ACCESS_JSON": json.dumps({"produce": produce_map(service)}),
    }


def aws_settings(endpoint_url: str | None = None) -> Settings:
    return Settings.resolve(endpoint_url=endpoint_url) if endpoint_url else Settings.resolve()


@asynccontextmanager
async def idempotency_table_on(settings: Settings) -> AsyncIterator[str]:
    """A fresh idempotency table as ``infra.stack.tables`` defines it (no TTL, so nothing the run
    counts disappears), deleted afterwards (a failed delete is reported, never raised over the
    scenario's own outcome)."""
    ddb: Any = await asyncio.to_thread(client, settings, "dynamodb")
    table = scratch_table(ddb, "chaos", idempotency_table(), wait_s=30)
    name = await asyncio.to_thread(table.__enter__)
    try:
        yield name
    finally:
        try:
            await asyncio.to_thread(table.__exit__, None, None, None)
        except Exception as exc:
            print(f"chaos: warning: could not delete table {name}: {exc!r}", file=sys.stderr)


def in_progress_claims(settings: Settings, table: str) -> int:
    """Idempotency records still ``IN_PROGRESS`` (blocking: run in a thread)."""
    ddb: Any = client(settings, "dynamodb")
    found = 0
    args: dict[str, Any] = {"TableName": table, "ProjectionExpression": "#s",
                            "ExpressionAttributeNames": {"#s": "status"}, "ConsistentRead": True}
    while True:
        page = ddb.scan(**args)
        found += sum(1 for item in page.get("Items", []) if item["status"]["S"] == "IN_PROGRESS")
        if "LastEvaluatedKey" not in page:
            return found
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
