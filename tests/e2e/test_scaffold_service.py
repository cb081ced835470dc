"""``meshgate new service`` end to end (issue 12): a service scaffolded into a scratch copy of
the project is deployed as its own stack on the real emulator, with its topic on the real
broker and its worker started as ``meshgate up`` starts workers (from the policy), and
answers through its new HTTP route; then everything it made is removed.

The scratch stack has its own name, local dir, dev-issuer bucket and (unused) collector
port, so the main stack is untouched: it shares only the broker, the emulator and the
content-addressed Lambda dependency cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.settings import ROOT, Settings
from proof.procs import free_port

COPIED = ("bus", "functions", "infra", "policies", "localstack", "pyproject.toml",
          "constraints.txt")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")
STEP_TIMEOUT_S = 600.0
READY_WITHIN_S = 120.0  # a readiness wait (the worker joins its group), not an assertion
CLI = "from infra.cli.main import main; main()"
START_WORKER = ("from infra.local import workers as w; from infra.settings import Settings; "
                "w.start_worker(Settings.resolve(), w.WorkerSpec('catalog', "
                "'functions.catalog.worker'), print)")
STOP_WORKER = START_WORKER.replace("w.start_worker", "w.stop_worker")


@dataclass(frozen=True)
class Scratch:
    root: Path
    env: dict[str, str]
    endpoint: str
    timings: dict[str, float]


def _python(scratch: Path, env: dict[str, str], code: str, *args: str) -> str:
    """Run ``code`` with the scratch copy first on sys.path (cwd), so its infra and functions
    are the ones imported and ``Settings.root`` is the scratch copy."""
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=scratch, env=env,
                            capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _get(url: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            await admin.delete_topics([topic])
    finally:
        await admin.close()


def _remove_stack(settings: Settings, stack: str, bucket: str) -> None:
    aws = settings.aws_client_args()
    cfn = boto3.client("cloudformation", **aws)
    cfn.delete_stack(StackName=stack)
    s3 = boto3.client("s3", **aws)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    if bucket in names:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    sm = boto3.client("secretsmanager", **aws)
    for secret in sm.list_secrets().get("SecretList", []):
        if secret["Name"].startswith(f"{stack}/"):
            sm.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
    ssm = boto3.client("ssm", **aws)
    params = ssm.get_parameters_by_path(Path=f"/{stack}", Recursive=True)["Parameters"]
    for param in params:
        ssm.delete_parameter(Name=param["Name"])


@pytest.fixture(scope="module")
def scratch(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    # ``endpoint``: the main stack is up, so the broker and the emulator run.
    main = Settings.resolve()
    root = tmp_path_factory.mktemp("scaffold") / "project"
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=IGNORED)
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / name)
    (root / "build").mkdir()
    (root / "build" / "deps").symlink_to(main.deps_dir)  # content-keyed: safe to share
    stack = f"meshgate-scaffold-{secrets.token_hex(3)}"
    bucket = f"{stack}-issuer"
    mesh = root / "policies" / "mesh.yaml"
    mesh.write_text(mesh.read_text().replace("/meshgate-local-issuer/", f"/{bucket}/"))
    env = {**os.environ, "MESHGATE_STACK_NAME": stack,
           "MESHGATE_LOCAL_DIR": str(root / ".local"),
           "MESHGATE_COLLECTOR_PORT": str(free_port()),  # none: its spans stay out of ours
           # it shares the main broker but not its local dir (the CA, the SCRAM users that
           # 'meshgate up' makes): its mesh uses the broker's PLAINTEXT door
           "MESHGATE_LOCAL_MESH_PROTOCOL": "PLAINTEXT",
           "PYTHONDONTWRITEBYTECODE": "1"}
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        out = _python(root, env, CLI, "new", "service", "catalog",
                      "--route", "GET /v1/catalog/{sku}")
        assert "policy check: ok" in out
        timings["scaffold"] = time.monotonic() - started
        step = time.monotonic()
        _python(root, env, CLI, "topics")
        deployed = _python(root, env, CLI, "deploy")
        timings["topics+deploy"] = time.monotonic() - step
        endpoint_lines = [line for line in deployed.splitlines()
                          if line.startswith("endpoint: ")]
        assert endpoint_lines, deployed
        step = time.monotonic()
        _python(root, env, START_WORKER)
        timings["worker"] = time.monotonic() - step
        yield Scratch(root, env, endpoint_lines[-1].removeprefix("endpoint: "), timings)
    finally:
        subprocess.run([sys.executable, "-c", STOP_WORKER], cwd=root, env=env,
                       timeout=STEP_TIMEOUT_S, check=False)
        _remove_stack(main, stack, bucket)
        asyncio.run(_delete_topic(main.kafka_bootstrap, "catalog.requests"))
        shutil.rmtree(root.parent, ignore_errors=True)
        print(f"scaffold e2e: {timings}, whole run {time.monotonic() - started:.1f}s")


def test_the_scaffold_wrote_a_service_the_policy_starts(scratch: Scratch) -> None:
    assert (scratch.root / "functions" / "catalog" / "worker.py").is_file()
    assert (scratch.root / "policies" / "catalog.yaml").is_file()
    # the generated in-memory test passes in the scratch project
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/unit/test_catalog_service.py"], cwd=scratch.root, env=scratch.env,
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # what it wrote passes the project's own rules: ruff and mypy --strict
    generated = ["functions/catalog", "tests/unit/test_catalog_service.py"]
    for tool in (["ruff", "check"], ["mypy"]):
        result = subprocess.run([sys.executable, "-m", *tool, *generated], cwd=scratch.root,
                                env=scratch.env, capture_output=True, text=True,
                                timeout=STEP_TIMEOUT_S, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    # its Kafka-event Lambda entry imports, and refuses an event no mapping sends
    refused = _python(scratch.root, scratch.env, "import json; from functions.catalog."
                      "lambda_handler import handler; print(json.dumps(handler({}, None)))")
    assert json.loads(refused.splitlines()[-1])["statusCode"] == 400
    # the local workers come from the policy: catalog is one of them
    listed = _python(scratch.root, scratch.env, "from infra.local import workers as w; "
                     "from infra.settings import Settings; "
                     "print([s.name for s in w.workers(Settings.resolve())])")
    assert "'catalog'" in listed


def test_the_new_route_answers_through_the_http_endpoint(scratch: Scratch) -> None:
    url = f"{scratch.endpoint}/v1/catalog/sku-1"
    deadline = time.monotonic() + READY_WITHIN_S
    status, body = _get(url)
    while status in (502, 503, 504) and time.monotonic() < deadline:  # worker joining
        time.sleep(2)
        status, body = _get(url)
    assert (status, body) == (200, {"sku": "sku-1", "name": "catalog item sku-1"})
    status, body = _get(f"{scratch.endpoint}/v1/catalog/missing-1")
    assert status == 404  # HandlerError("not_found") -> 404
    assert body["reason"] == "not_found"
    status, body = _get(f"{scratch.endpoint}/v1/catalog/bad%20sku")
    assert status == 422  # the route's params schema, checked by the gateway
    print(f"scaffold e2e timings: {scratch.timings}")
