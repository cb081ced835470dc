"""Faults on the real broker: a service worker SIGKILLed mid-batch, and the broker restarted
while requests are in flight.

Each scenario runs once and prints its counts (``pytest -s`` shows them); the assertions
state which guarantees hold. Every wait is bounded, every subprocess and the private broker
are stopped in ``finally``. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bus import codec
from bus.config import BusSettings
from bus.delivery.idempotency import MemoryIdempotencyStore
from bus.envelope import Envelope, ReplyTo, new_request, now_ms, to_headers
from bus.errors import DeadlineExceeded, TransportError
from bus.runtime.client import MeshClient
from bus.runtime.worker import ServiceWorker
from bus.security.identity import Identity
from bus.security.quarantine import QUARANTINE_TOPIC
from bus.security.signing import sign
from bus.service import Payload, Service
from bus.transport import Reader, Record, Transport, positions_after
from bus.transport.kafka import KafkaTransport
from infra.stack.tables import idempotency_table
from proof.procs import free_port
from tests.integration.fault_worker import (
    APPLIED_FILE_ENV,
    HANDLER_MS_ENV,
    TABLE_ENV,
    operation_of,
    parse_applied,
)
from tests.support import KAFKA_SCRIPT, ROOT, identities, run, scratch_table

pytestmark = pytest.mark.integration

CALLER = "fault-caller"
REPLY_TOPIC = "mesh.replies"


@dataclass
class Call:
    """One ``MeshClient.request`` and how it ended."""

    n: int
    reply: dict[str, Any] | None = None
    error: BaseException | None = None
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def outcome(self) -> str:
        if self.ended_at is None:
            return "hung"
        return "ok" if self.error is None else type(self.error).__name__


async def call(client: MeshClient, operation: str, n: int, calls: dict[int, Call],
               timeout_s: float, **extra: Any) -> None:
    """Record the outcome of one request; never raises (the test classifies outcomes)."""
    record = calls[n] = Call(n)
    try:
        record.reply = await client.request(operation, {"n": n, **extra}, timeout_s=timeout_s)
    except Exception as exc:
        record.error = exc
    record.ended_at = time.monotonic()


def produce_map(service: str) -> dict[str, list[str]]:
    return {CALLER: [f"{service}.requests"], service: [REPLY_TOPIC, QUARANTINE_TOPIC]}


@asynccontextmanager
async def topics(bootstrap: str, specs: Mapping[str, int]) -> AsyncIterator[None]:
    """Create ``specs`` (topic -> partitions); delete them afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        await asyncio.wait_for(
            admin.create_topics([NewTopic(name, parts, 1) for name, parts in specs.items()]), 30)
        yield
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.delete_topics(list(specs)), 30)
    finally:
        await admin.close()


async def group_stable(bootstrap: str, group: str, members: int, timeout_s: float) -> None:
    """Wait until consumer group ``group`` is ``Stable`` with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await asyncio.wait_for(admin.start(), 30)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                answer = await admin.describe_consumer_groups([group])
                state = answer[0].to_object()["groups"][0]
                if state["state"] == "Stable" and len(state["members"]) == members:
                    return
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


@asynccontextmanager
async def mesh_caller(settings: BusSettings, identity: Identity,
                      transport: Transport | None = None) -> AsyncIterator[MeshClient]:
    client = MeshClient(transport or KafkaTransport(settings), settings, identity)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.close(), 30)


# --- 1. a service worker SIGKILLed mid-batch ---------------------------------------------

PARTITIONS = 6
BURST = 200
# The request the victim is inside when it is killed: early in the burst, so the survivor
# has answered its own share long before the victim's session times out (10 s later).
MARKER = BURST // 4
HANDLER_MS = 30
HOLD_S = 5.0  # the marker's handler time: plenty for the test to see its effect and kill
ANSWERED_BEFORE_KILL = 20
TIMEOUT_S = 30.0  # > session timeout (10 s) + rebalance + the victim's backlog on the survivor
WARMUP_TIMEOUT_S = 20.0
WORKER_MODULE = "tests.integration.fault_worker"


@dataclass
class KillRun:
    calls: dict[int, Call]
    applied: dict[int, list[tuple[str, int]]]  # n -> [(correlation id, pid)] per application
    victim: int
    survivor: int
    killed_at: float
    answered_before_kill: int
    marker_answered_before_kill: bool
    victim_exit: int | None
    survivor_alive_at_end: bool
    survivor_exit: int | None
    survivor_counters: dict[str, int] = field(default_factory=dict)
    claims_left_in_progress: int = -1  # idempotency records still IN_PROGRESS at the end
    logs: str = ""

    def burst(self) -> list[Call]:
        return [self.calls[n] for n in range(BURST)]

    def failed(self) -> set[int]:
        return {c.n for c in self.calls.values() if c.error is not None}

    def counts(self) -> dict[str, Any]:
        outcomes = Counter(c.outcome for c in self.calls.values())
        answered_after_kill = sum(
            1 for c in self.calls.values()
            if c.reply is not None and c.ended_at is not None and c.ended_at > self.killed_at)
        burst_start = min(c.started_at for c in self.burst())
        last_reply = max((c.ended_at for c in self.burst()
                          if c.reply is not None and c.ended_at is not None),
                         default=burst_start)
        failed = self.failed()
        return {
            "offered": len(self.calls),
            "burst_s": round(last_reply - burst_start, 1),
            "kill_at_s": round(self.killed_at - burst_start, 1),
            "succeeded": outcomes["ok"],
            "failed": {k: v for k, v in outcomes.items() if k != "ok"},
            "answered_before_kill": self.answered_before_kill,
            "answered_after_kill": answered_after_kill,
            "applied_once": sum(1 for a in self.applied.values() if len(a) == 1),
            "applied_twice_or_more": sum(1 for a in self.applied.values() if len(a) > 1),
            "never_applied": sum(1 for n in self.calls if not self.applied.get(n)),
            "failed_applied_by_victim": sum(1 for n in failed if self.applied.get(n)),
            "failed_never_applied": sum(1 for n in failed if not self.applied.get(n)),
            "claims_left_in_progress": self.claims_left_in_progress,
            "survivor": self.survivor_counters,
        }


@pytest.fixture(scope="module")
def shared_table(dynamodb: Any) -> Iterator[str]:
    """The idempotency table both workers share, as ``infra.stack.tables`` defines it (without
    TTL, so the records the test counts at the end are still there)."""
    with scratch_table(dynamodb, "faults", idempotency_table(), ttl=False) as name:
        yield name


def statuses(dynamodb: Any, table: str) -> Counter[str]:
    """How many idempotency records of ``table`` have each status."""
    found: Counter[str] = Counter()
    args: dict[str, Any] = {"TableName": table, "ProjectionExpression": "#s",
                            "ExpressionAttributeNames": {"#s": "status"}, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**args)
        found.update(item["status"]["S"] for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return found
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def worker_env(bootstrap: str, service: str, identity: Identity, keyring: dict[str, Any],
               produce: dict[str, list[str]], extra: Mapping[str, str]) -> dict[str, str]:
    """The subprocess environment: ours without any MESH_*, plus the worker's identity."""
    assert identity.signing_key is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update({
        "MESH_BOOTSTRAP_SERVERS": bootstrap,
        "MESH_SERVICE_NAME": service,
        "MESH_SIGNING_KEY": base64.b64encode(identity.signing_key.secret).decode(),
        "MESH_KEYRING_JSON": json.dumps(keyring),
        "MESH_ACCESS_JSON": json.dumps({"produce": produce}),
        **extra,
    })
    return env


async def spawn_worker(env: Mapping[str, str], log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE, cwd=ROOT, env=dict(env),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=log)


async def stop_worker(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (and EOF on stdin), then SIGKILL if it has not exited within 20 s."""
    if process.returncode is None:
        if process.stdin is not None:
            process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), 5)


async def applied_by(path: Path, n: int, timeout_s: float) -> int:
    """The pid of the worker that applied request ``n``, once its effect is visible."""
    async with asyncio.timeout(timeout_s):
        while True:
            text = await asyncio.to_thread(path.read_text)
            for _, number, pid in parse_applied(text):
                if number == n:
                    return pid
            await asyncio.sleep(0.02)


def worker_counters(log: str) -> dict[str, int]:
    """The counters a fault worker logs when it stops (``handled=1 duplicates=2 ...``)."""
    for line in reversed(log.splitlines()):
        if "stopped: " in line:
            pairs = (item.split("=") for item in line.split("stopped: ", 1)[1].split())
            return {name: int(value) for name, value in pairs}
    return {}


async def kill_scenario(bootstrap: str, table: str, workdir: Path) -> KillRun:
    service = f"faultkill{uuid.uuid4().hex[:10]}"
    operation = operation_of(service)
    produce = produce_map(service)
    mesh = identities(produce)
    keyring = next(iter(mesh.values())).keyring
    assert keyring is not None
    applied_file = workdir / "applied.txt"
    applied_file.touch()
    env = worker_env(bootstrap, service, mesh[service], keyring.to_dict(), produce, {
        APPLIED_FILE_ENV: str(applied_file), TABLE_ENV: table, HANDLER_MS_ENV: str(HANDLER_MS),
    })
    settings = BusSettings(bootstrap_servers=bootstrap, service_name=CALLER)
    logs = [workdir / f"worker{i}.log" for i in range(2)]
    workers: list[asyncio.subprocess.Process] = []
    calls: dict[int, Call] = {}
    async with topics(bootstrap, {f"{service}.requests": PARTITIONS}):
        try:
            # One after the other, each joining an idle group, so the only rebalance under
            # load is the one the kill causes.
            for count, log in enumerate(logs, start=1):
                workers.append(await spawn_worker(env, log))
                await group_stable(bootstrap, service, count, 60)
            pids = {w.pid for w in workers}
            async with mesh_caller(settings, mesh[CALLER]) as client:
                # Warm-up until both workers have answered.
                seen: set[int] = set()
                number = 10_000
                async with asyncio.timeout(90):
                    while seen != pids:
                        batch = range(number, number + 12)
                        number += 12
                        await asyncio.gather(*(call(client, operation, i, calls,
                                                    WARMUP_TIMEOUT_S) for i in batch))
                        seen |= {calls[i].reply["by"] for i in batch  # type: ignore[index]
                                 if calls[i].reply is not None}
                assert all(w.returncode is None for w in workers), "a worker died early"
                # The burst; the marker holds its handler for HOLD_S after its effect, and
                # the kill lands inside it, once some requests have been answered.
                tasks = [asyncio.create_task(call(
                    client, operation, n, calls, TIMEOUT_S,
                    **({"hold_s": HOLD_S} if n == MARKER else {}))) for n in range(BURST)]
                try:
                    victim = await applied_by(applied_file, MARKER, TIMEOUT_S)
                    assert victim in pids, f"pid {victim} is none of our workers {pids}"
                    # Kill once ANSWERED_BEFORE_KILL are answered, or HOLD_S / 2 after the
                    # marker's effect at the latest: inside the marker's handler either way.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(HOLD_S / 2):
                            while sum(1 for c in calls.values()  # noqa: ASYNC110
                                      if c.reply is not None and c.n < BURST
                                      ) < ANSWERED_BEFORE_KILL:
                                await asyncio.sleep(0.01)
                    answered_before_kill = sum(1 for c in calls.values()
                                               if c.reply is not None and c.n < BURST)
                    marker_answered = calls[MARKER].ended_at is not None
                    victim_process = next(w for w in workers if w.pid == victim)
                    victim_process.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
                    victim_exit = await asyncio.wait_for(victim_process.wait(), 10)
                    async with asyncio.timeout(TIMEOUT_S + 20):
                        await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
            survivor_process = next(w for w in workers if w.pid != victim)
            survivor_alive = survivor_process.returncode is None
            await stop_worker(survivor_process)
        finally:
            for worker in workers:
                await stop_worker(worker)
    applied: dict[int, list[tuple[str, int]]] = {}
    for cid, n, pid in parse_applied(applied_file.read_text()):
        applied.setdefault(n, []).append((cid, pid))
    survivor_log = logs[workers.index(survivor_process)].read_text()
    return KillRun(
        calls=calls, applied=applied, victim=victim, survivor=survivor_process.pid,
        killed_at=killed_at, answered_before_kill=answered_before_kill,
        marker_answered_before_kill=marker_answered, victim_exit=victim_exit,
        survivor_alive_at_end=survivor_alive, survivor_exit=survivor_process.returncode,
        survivor_counters=worker_counters(survivor_log),
        logs="\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs),
    )


@pytest.fixture(scope="module")
def killed_mid_batch(bootstrap: str, shared_table: str, dynamodb: Any,
                     tmp_path_factory: pytest.TempPathFactory) -> KillRun:
    """Two worker processes share one group, one request topic and one DynamoDB idempotency
    table. A caller sends a burst of requests; the worker that runs the marker request is
    SIGKILLed inside its handler (after the handler's effect, before the store's
    ``complete``), with other requests of its batch answered but not committed, in flight,
    or not started."""
    outcome = asyncio.run(kill_scenario(bootstrap, shared_table,
                                        tmp_path_factory.mktemp("killed")))
    outcome.claims_left_in_progress = statuses(dynamodb, shared_table)["IN_PROGRESS"]
    print(f"\nworker killed mid-batch: {json.dumps(outcome.counts())}")
    return outcome


def test_killed_worker_hands_every_request_to_the_survivor(
    killed_mid_batch: KillRun,
) -> None:
    """What holds when a worker dies mid-batch (claims have a short lease that the handler's
    heartbeat renews, so a dead worker's claims lapse within one lease):

    - nothing is lost and every caller gets exactly one successful reply, also for the
      requests the victim was in the middle of (the survivor takes them over after the
      rebalance and the lease) and for those it had answered but not committed (the
      survivor answers them from the store without running them again);
    - every request ran exactly once, except those the victim was inside of when it died:
      they ran at most twice, on the victim and then on the survivor, and the reply carries
      the survivor's run. That second run is where exactly-once ends for effects that are
      not idempotent by construction (the marker: its effect came before the kill).
    - no claim is left in progress."""
    run_ = killed_mid_batch
    assert run_.victim_exit == -signal.SIGKILL
    assert run_.survivor_alive_at_end, run_.logs
    assert run_.survivor_exit == 0, run_.logs
    assert run_.answered_before_kill > 0
    assert not run_.marker_answered_before_kill  # the kill landed inside the marker's handler
    assert {c.n: repr(c.error) for c in run_.calls.values() if c.error is not None} == {}, (
        run_.logs)
    assert [n for n in run_.calls if not run_.applied.get(n)] == []
    assert set(run_.applied) <= set(run_.calls)
    twice = {n: [pid for _, pid in a] for n, a in run_.applied.items() if len(a) > 1}
    assert all(pids == [run_.victim, run_.survivor] for pids in twice.values()), twice
    assert MARKER in twice
    for c in run_.calls.values():  # the reply carries the run that completed
        assert c.reply == {"n": c.n, "by": run_.applied[c.n][-1][1]}
    assert run_.claims_left_in_progress == 0, run_.logs


# --- 2. the broker restarted while requests are in flight --------------------------------

OFFERED = 100
SPACING_S = 0.03  # 100 requests over ~3 s
STOP_AFTER = 40  # requests offered before the broker is stopped
AFTER = 10  # requests offered once the broker is back: the mesh must have recovered
RESTART_TIMEOUT_S = 20.0
REPLY_PARTITIONS = 4
HANDLER_S = 0.2  # several requests are inside the handler when the broker stops


class Delegating:
    """A ``Transport`` that passes everything to a real one (subclasses watch some of it)."""

    def __init__(self, inner: KafkaTransport) -> None:
        self._inner = inner

    async def send(self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None = None, partition: int | None = None) -> None:
        await self._inner.send(topic, value, headers=headers, key=key, partition=partition)

    async def partition_count(self, topic: str) -> int:
        return await self._inner.partition_count(topic)

    def assigned_reader(self, topic: str, partition: int, *,
                        from_beginning: bool = False) -> Reader:
        return self._inner.assigned_reader(topic, partition, from_beginning=from_beginning)

    def group_reader(self, topics: Sequence[str], group_id: str) -> Reader:
        return self._inner.group_reader(topics, group_id)

    async def close(self) -> None:
        await self._inner.close()


class AckRecorder(Delegating):
    """Remembers when the broker acknowledged each request (by its ``n``)."""

    def __init__(self, inner: KafkaTransport, request_topic: str) -> None:
        super().__init__(inner)
        self._topic = request_topic
        self.acked: dict[int, float] = {}

    async def send(self, topic: str, value: bytes, *, headers: Sequence[tuple[str, bytes]],
                   key: bytes | None = None, partition: int | None = None) -> None:
        await super().send(topic, value, headers=headers, key=key, partition=partition)
        if topic == self._topic:
            self.acked.setdefault(int(codec.decode(value)["n"]), time.monotonic())


@dataclass
class Outage:
    started: float = 0.0  # just before the stop command
    ended: float = 0.0  # the start command returned: the broker answers again
    stop_rc: int | None = None
    start_rc: int | None = None
    output: list[str] = field(default_factory=list)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A second broker on free ports with its own data folder, always stopped afterwards."""
    env = {"KAFKA_PORT": str(free_port()), "KAFKA_STATE_DIR": str(tmp_path / "kafka"),
           "KAFKA_HEAP": "512m"}
    try:
        started = run(["bash", str(KAFKA_SCRIPT), "start"], env, timeout_s=150)
        assert started.returncode == 0, started.stderr
        yield env
    finally:
        run(["bash", str(KAFKA_SCRIPT), "stop"], env, timeout_s=60)


async def restart(env: dict[str, str], outage: Outage) -> None:
    outage.started = time.monotonic()
    stopped = await asyncio.to_thread(run, ["bash", str(KAFKA_SCRIPT), "stop"], env, 60)
    outage.stop_rc = stopped.returncode
    started = await asyncio.to_thread(run, ["bash", str(KAFKA_SCRIPT), "start"], env, 150)
    outage.start_rc = started.returncode
    outage.ended = time.monotonic()
    outage.output += [stopped.stdout, stopped.stderr, started.stdout, started.stderr]


async def logged_numbers(transport: KafkaTransport, topic: str, want: set[int]) -> set[int]:
    """The request numbers the topic holds (read from the beginning), until ``want`` are
    all found or 15 s have passed."""
    found: set[int] = set()
    readers = [transport.assigned_reader(topic, p, from_beginning=True)
               for p in range(await transport.partition_count(topic))]
    for reader in readers:
        await reader.start()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                while not want <= found:
                    for reader in readers:
                        for record in await reader.read(0.2):
                            found.add(int(codec.decode(record.value or b"{}")["n"]))
    finally:
        for reader in readers:
            await reader.stop()
    return found


async def test_broker_restart_loses_nothing_accepted_and_applies_nothing_twice(
    private_broker: dict[str, str],
) -> None:
    """A worker (in-process, memory idempotency store) and a caller on a private broker; a
    stream of requests; mid-stream the broker is stopped and started again with the script
    (its data folder, so topics and committed offsets, survive).

    Proves: every call ends with a reply or a clear ``DeadlineExceeded``/``TransportError``
    (never another exception, never a hang); every request the broker acknowledged before
    the outage is still in the log afterwards and got its reply, unless its deadline passed
    (counted apart); no request's handler ran twice; the worker survived the outage and
    requests sent once the broker is back all succeed."""
    bootstrap = f"127.0.0.1:{private_broker['KAFKA_PORT']}"
    service_name = f"faultrestart{uuid.uuid4().hex[:8]}"
    request_topic = f"{service_name}.requests"
    mesh = identities(produce_map(service_name))
    applied: dict[int, list[str]] = {}
    in_handler: set[int] = set()
    service = Service(service_name)

    @service.operation(operation_of(service_name))
    async def apply(payload: Payload, message: Envelope) -> Payload:
        n = int(payload["n"])
        applied.setdefault(n, []).append(message.correlation_id or message.id)
        in_handler.add(n)
        try:
            await asyncio.sleep(HANDLER_S)
        finally:
            in_handler.discard(n)
        return {"n": n}

    worker_settings = BusSettings(bootstrap_servers=bootstrap, service_name=service_name)
    caller_settings = BusSettings(bootstrap_servers=bootstrap, service_name=CALLER)
    calls: dict[int, Call] = {}
    outage = Outage()
    recorder = AckRecorder(KafkaTransport(caller_settings), request_topic)
    async with topics(bootstrap, {request_topic: 3, REPLY_TOPIC: REPLY_PARTITIONS,
                                  QUARANTINE_TOPIC: 1}):
        worker_transport = KafkaTransport(worker_settings)
        worker = ServiceWorker(service, worker_transport, worker_settings, mesh[service_name],
                               store=MemoryIdempotencyStore())
        stop = asyncio.Event()
        worker_task = asyncio.create_task(worker.run(stop))
        tasks: list[asyncio.Task[None]] = []
        try:
            async with mesh_caller(caller_settings, mesh[CALLER], recorder) as client:
                operation = operation_of(service_name)
                # One answered call first: the group is joined and the caller listening.
                await call(client, operation, -1, calls, 60)
                assert calls[-1].reply == {"n": -1}, repr(calls[-1].error)
                restarting: asyncio.Task[None] | None = None
                handling_at_stop = 0
                for n in range(OFFERED):
                    if n == STOP_AFTER:
                        handling_at_stop = len(in_handler)
                        restarting = asyncio.create_task(restart(private_broker, outage))
                    tasks.append(asyncio.create_task(
                        call(client, operation, n, calls, RESTART_TIMEOUT_S)))
                    await asyncio.sleep(SPACING_S)
                assert restarting is not None
                await asyncio.wait_for(restarting, 240)
                assert outage.stop_rc == 0, outage.output
                assert outage.start_rc == 0, outage.output
                tasks += [asyncio.create_task(call(client, operation, OFFERED + i, calls,
                                                   RESTART_TIMEOUT_S)) for i in range(AFTER)]
                async with asyncio.timeout(RESTART_TIMEOUT_S + 30):
                    await asyncio.gather(*tasks)
                acked_before = {n for n, at in recorder.acked.items()
                                if 0 <= n < OFFERED and at < outage.started}
                in_log = await logged_numbers(worker_transport, request_topic, acked_before)
        finally:
            for task in tasks:
                task.cancel()
            worker_alive = not worker_task.done()
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker_task, 20)
            await worker_transport.close()

    stream = [calls[n] for n in range(OFFERED)]
    outcomes = Counter(c.outcome for c in stream)
    clear = (DeadlineExceeded, TransportError)
    answered = {c.n for c in stream if c.reply is not None}
    deadline_passed = {n for n in acked_before if isinstance(calls[n].error, DeadlineExceeded)}
    lost = {n for n in acked_before
            if n not in in_log or (n not in answered and n not in deadline_passed)}
    twice = {n: cids for n, cids in applied.items() if len(cids) > 1}
    counts = {
        "offered": OFFERED,
        "succeeded": outcomes["ok"],
        "failed_with_clear_error": sum(1 for c in stream if isinstance(c.error, clear)),
        "failed_by_type": {k: v for k, v in outcomes.items() if k != "ok"},
        "in_handler_at_stop": handling_at_stop,
        "offered_during_outage": sum(1 for c in stream
                                     if outage.started <= c.started_at <= outage.ended),
        "acked_before_outage": len(acked_before),
        "acked_before_outage_answered": len(acked_before & answered),
        "acked_before_outage_deadline_passed": len(deadline_passed),
        "lost": len(lost),
        "applied_twice": len(twice),
        "after_restart_succeeded": sum(1 for i in range(AFTER)
                                       if calls[OFFERED + i].reply is not None),
        "outage_s": round(outage.ended - outage.started, 1),
        "worker": {"handled": worker.handled, "duplicates": worker.duplicates,
                   "expired": worker.expired, "abandoned": worker.abandoned,
                   "quarantined": worker.quarantined},
    }
    print(f"\nbroker restarted mid-stream: {json.dumps(counts)}")

    assert worker_alive, "the worker stopped during the outage"
    assert [c.n for c in calls.values() if c.outcome == "hung"] == []
    unclear = {c.n: repr(c.error) for c in calls.values()
               if c.error is not None and not isinstance(c.error, clear)}
    assert unclear == {}
    assert acked_before, "no request was acknowledged before the outage"
    assert any(n not in acked_before for n in range(STOP_AFTER, OFFERED)), \
        "no request was offered during the outage"
    assert lost == set()
    assert twice == {}
    for c in calls.values():
        if c.reply is not None:
            assert c.reply == {"n": c.n}
            assert len(applied.get(c.n, [])) == 1, f"request {c.n} answered, not applied"
    assert [OFFERED + i for i in range(AFTER) if calls[OFFERED + i].reply is None] == []


# --- 3. a rebalance in the middle of a batch (what made 1 flaky at first) ------------------

class WatchedReader:
    """A group ``Reader`` that remembers the partitions of each batch and each commit's end."""

    def __init__(self, inner: Reader) -> None:
        self._inner = inner
        self.batches: list[set[int]] = []
        self.commits: list[str] = []

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def read(self, timeout_s: float, max_records: int = 100) -> list[Record]:
        records = await self._inner.read(timeout_s, max_records)
        if records:
            self.batches.append({r.partition for r in records})
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        await self.commit_offsets(positions_after(records))

    async def commit_offsets(self, positions: Mapping[tuple[str, int], int]) -> None:
        try:
            await self._inner.commit_offsets(positions)
        except Exception as exc:
            self.commits.append(repr(exc))
            raise
        if positions:
            self.commits.append("ok")


class WatchedTransport(Delegating):
    reader: WatchedReader | None = None

    def group_reader(self, topics: Sequence[str], group_id: str) -> Reader:
        self.reader = WatchedReader(super().group_reader(topics, group_id))
        return self.reader


def signed_request(sender: Identity, topic: str, operation: str, n: int) -> Envelope:
    assert sender.signing_key is not None
    envelope = new_request(source=sender.service, operation=operation,
                           value=codec.encode({"n": n}), reply_to=ReplyTo(REPLY_TOPIC, 0),
                           deadline_ms=now_ms() + 30_000)
    return sign(envelope, topic, sender.signing_key)


async def test_worker_survives_a_rebalance_mid_batch(bootstrap: str) -> None:
    """Worker A alone holds both partitions and is inside a handler with a batch from both;
    worker B joins the group, the roundrobin rebalance gives each one partition; A finishes
    its batch and commits. The broker refuses the commit for the partition that moved
    (aiokafka: IllegalStateError "Partition ... is not assigned", as ``BrokerRefused``). A
    must go on (the record is redelivered to B, whose idempotency store, in a real
    deployment, answers it from the stored result) instead of stopping.

    Regression test: the sequential ``ServiceWorker.run`` at the last commit awaited
    ``reader.commit(records)`` outside any ``try``, so that refusal stopped the worker (a
    worker joining the group, i.e. scaling out, killed the busy ones); the pipeline in the
    working tree logs a refused commit and goes on."""
    service_name = f"faultrebalance{uuid.uuid4().hex[:8]}"
    topic = f"{service_name}.requests"
    operation = operation_of(service_name)
    mesh = identities(produce_map(service_name))
    inside = asyncio.Event()
    release = asyncio.Event()
    service = Service(service_name)

    @service.operation(operation)
    async def apply(payload: Payload, message: Envelope) -> Payload:
        inside.set()
        async with asyncio.timeout(25):
            await release.wait()
        return {"n": payload["n"]}

    settings = BusSettings(bootstrap_servers=bootstrap, service_name=service_name)
    sender = KafkaTransport(BusSettings(bootstrap_servers=bootstrap, service_name=CALLER))
    watched = WatchedTransport(KafkaTransport(settings))
    other = KafkaTransport(settings)
    store = MemoryIdempotencyStore()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    async with topics(bootstrap, {topic: 2}):
        try:
            for partition in (0, 1):  # both in the log before A's first fetch
                request = signed_request(mesh[CALLER], topic, operation, partition)
                await sender.send(topic, request.value, headers=to_headers(request),
                                  partition=partition)
            # One store for both, as the group's shared table would be.
            worker_a = ServiceWorker(service, watched, settings, mesh[service_name], store=store)
            tasks.append(asyncio.create_task(worker_a.run(stop)))
            await asyncio.wait_for(inside.wait(), 30)
            assert watched.reader is not None
            if watched.reader.batches[:1] != [{0, 1}]:
                raise RuntimeError(f"precondition: A's first batch held partitions "
                                   f"{watched.reader.batches[:1]}, not both")
            worker_b = ServiceWorker(service, other, settings, mesh[service_name], store=store)
            tasks.append(asyncio.create_task(worker_b.run(stop)))
            await group_stable(bootstrap, service_name, 2, 30)
            release.set()
            async with asyncio.timeout(20):
                while not watched.reader.commits and not tasks[0].done():  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            print(f"\nrebalance mid-batch: A handled {worker_a.handled}, A's commits "
                  f"{watched.reader.commits}")
            assert not tasks[0].done(), f"worker A stopped: {tasks[0].exception()!r}"
        finally:
            stop.set()
            release.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 20)
            for transport in (sender, watched, other):
                await transport.close()
