"""Local processes: the broker and emulator scripts, and the demo service workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bus.topics import REPLY_TOPIC
from infra.errors import ProcessFailed
from infra.local import kafka_env
from infra.policy import operators_of, services_of
from infra.settings import Settings
from infra.stack.function_env import keyring_reload_s
from infra.stack.otel_env import otel_environment

Say = Callable[[str], None]
KAFKA_SCRIPT = "kafka/kafka.sh"
EMULATOR_SCRIPT = "ministack/ministack.sh"
SCRIPT_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 15.0


def run_script(settings: Settings, script: str, action: str, say: Say) -> bool:
    """Run a localstack script; True when it succeeded. ``status`` may fail without raising."""
    path = settings.root / "localstack" / script
    try:
        result = subprocess.run(
            ["bash", str(path), action], capture_output=True, text=True,
            env={**os.environ, **settings.script_environment()},
            timeout=SCRIPT_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProcessFailed(f"{script} {action} took over {SCRIPT_TIMEOUT_S:g}s",
                            "see its log under .local/") from exc
    for line in result.stdout.splitlines():
        say(line)
    if result.returncode == 0:
        return True
    if action == "status":
        return False
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    detail = errors[-1] if errors else (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise ProcessFailed(f"{script} {action} failed: {detail}", "fix the cause above and retry")


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    module: str


# Always run, besides the services' workers. The async results recorder runs as the
# gateway (its identity, key and access); the local OTLP/HTTP collector (traces to
# .local/telemetry/spans.jsonl) is last, so it is stopped after the workers' final export.
RECORDER = WorkerSpec("gateway", "functions.async_results.worker")
COLLECTOR = WorkerSpec("collector", "infra.local.collector")


def service_workers(root: Path, services: Iterable[str]) -> tuple[WorkerSpec, ...]:
    """The policy's services that have a ``functions/<name>/worker.py``, sorted: a service
    gets a local worker by declaring it in the policy and writing that file (what
    ``meshgate new service`` does); no list in code."""
    return tuple(WorkerSpec(name, f"functions.{name}.worker") for name in sorted(services)
                 if (root / "functions" / name / "worker.py").is_file())


def kafka_principals(settings: Settings) -> list[str]:
    """Who connects to the local broker with its own SCRAM user: every service of the policy
    (the gateway among them), every worker that talks to Kafka, and the policy's operators
    (``meshgate dlq replay`` may go through the SASL_SSL listener as one, with the ACLs the
    policy gives it, instead of the PLAINTEXT door)."""
    names = set(services_of(settings.root / "policies"))
    names.update(operators_of(settings.root / "policies"))
    names.update(w.name for w in workers(settings) if w != COLLECTOR)
    return sorted(names)


def workers(settings: Settings) -> tuple[WorkerSpec, ...]:
    """Every local process ``meshgate up`` starts (and ``down`` stops), in start order."""
    names = services_of(settings.root / "policies")
    return (*service_workers(settings.root, names), RECORDER, COLLECTOR)


def _worker_paths(settings: Settings, spec: WorkerSpec) -> tuple[Path, Path]:
    folder = settings.local_dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{spec.name}.pid", folder / f"{spec.name}.log"


def worker_pid(settings: Settings, spec: WorkerSpec) -> int | None:
    """The worker's pid if it is alive and really is that worker (pids get reused)."""
    pidfile, _ = _worker_paths(settings, spec)
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if spec.module.encode() in cmdline else None


def worker_environment(settings: Settings, spec: WorkerSpec) -> dict[str, str]:
    """Bus settings of a local worker: the broker and how it connects, its identity, the
    idempotency table."""
    identity_dir = settings.local_dir / "identity"
    env = {
        # the broker's SASL_SSL listener as the worker's own SCRAM user (infra.local.kafka_env)
        **kafka_env.client_environment(settings, spec.name),
        "MESH_SERVICE_NAME": spec.name,
        "MESH_REPLY_TOPIC": REPLY_TOPIC,  # replies to the worker's nested calls (orders.quote)
        "MESH_SIGNING_KEY_SECRET": f"{settings.stack_name}/{spec.name}/signing-key",
        "MESH_KEYRING_FILE": str(identity_dir / "keyring.json"),  # reloaded: keys rotate
        "MESH_KEYRING_RELOAD_S": f"{keyring_reload_s(settings):g}",
        "MESH_ACCESS_FILE": str(identity_dir / "access.json"),
        "MESH_IDEMPOTENCY_TABLE": f"{settings.stack_name}-idempotency",
        "MESH_OPERATIONS_TABLE": f"{settings.stack_name}-operations",  # stack.parts.async_routes
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        **otel_environment(settings, spec.name, metrics=True),
    }
    if settings.endpoint_url is not None:
        env.update(AWS_ENDPOINT_URL=settings.endpoint_url, AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test")
    return env


def start_worker(settings: Settings, spec: WorkerSpec, say: Say) -> int:
    pid = worker_pid(settings, spec)
    if pid is not None:
        say(f"worker {spec.name}: already running (pid {pid})")
        return pid
    pidfile, logfile = _worker_paths(settings, spec)
    env = {**os.environ, **settings.environment(), **worker_environment(settings, spec),
           "PYTHONUNBUFFERED": "1"}
    with logfile.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", spec.module],
            cwd=settings.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )
    pidfile.write_text(str(process.pid))
    time.sleep(0.5)
    if process.poll() is not None:
        raise ProcessFailed(f"worker {spec.name} exited at start ({process.returncode})",
                            f"see {logfile}")
    say(f"worker {spec.name}: started (pid {process.pid}, log {logfile})")
    return process.pid


def stop_worker(settings: Settings, spec: WorkerSpec, say: Say) -> None:
    pidfile, _ = _worker_paths(settings, spec)
    pid = worker_pid(settings, spec)
    if pid is None:
        say(f"worker {spec.name}: not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and worker_pid(settings, spec) == pid:
            time.sleep(0.1)
        if worker_pid(settings, spec) == pid:
            os.kill(pid, signal.SIGKILL)
        say(f"worker {spec.name}: stopped (pid {pid})")
    pidfile.unlink(missing_ok=True)
