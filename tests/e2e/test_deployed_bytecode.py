"""The code the emulator's Lambda holds for each deployed function (downloaded through
``GetFunction``, as AWS serves it): the project's modules carry their bytecode beside them,
unchecked hash-based (infra.deploy.bytecode) and compiled from the very source next to it, so
a cold start neither compiles them nor could run a stale ``.pyc``. Built by an interpreter
that is not the functions' Python, the zips must carry no bytecode at all. The gateway's
zip carries its routes' checks, generated at deploy (infra.deploy.validators), and its
handler, imported from the unpacked zip, builds the app without compiling a schema, and its
JWT verifier without PyJWT or cryptography's x509."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from bench.zip_cold_start import HANDLER_ENV  # the handler builds its app offline with it
from functions.gateway.schema_checks import PACKAGE
from infra.deploy import aws as deploy
from infra.deploy.bytecode import builds_for, pyc_name
from infra.settings import Settings

pytestmark = pytest.mark.e2e
FUNCTIONS = ("GatewayFunctionName", "AuthorizerFunctionName", "OrdersEventsFunctionName")
OWN_PACKAGES = ("bus/", "functions/", f"{PACKAGE}/")
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, not checked against the source


def deployed_zip(settings: Settings, output: str) -> zipfile.ZipFile:
    outputs = deploy.stack_outputs(settings)
    assert outputs is not None
    assert output in outputs, f"the stack has no {output}"
    code = deploy.client(settings, "lambda").get_function(FunctionName=outputs[output])["Code"]
    with urllib.request.urlopen(code["Location"], timeout=60) as answer:
        return zipfile.ZipFile(io.BytesIO(answer.read()))


@pytest.mark.parametrize("output", FUNCTIONS)
def test_a_deployed_function_carries_bytecode_of_its_own_sources(
        endpoint: str, settings: Settings, output: str) -> None:
    archive = deployed_zip(settings, output)
    names = set(archive.namelist())
    sources = sorted(name for name in names
                     if name.endswith(".py") and name.startswith(OWN_PACKAGES))
    assert len(sources) > 20
    if not builds_for(settings.lambda_python):
        assert not [name for name in names if name.endswith(".pyc")]
        return
    for source in sources:
        pyc = pyc_name(source)
        assert pyc in names, f"{output}: {source} has no {pyc}"
        header = archive.read(pyc)[:16]
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, pyc
        assert header[8:16] == importlib.util.source_hash(archive.read(source)), (
            f"{output}: {pyc} was not compiled from the {source} beside it")


PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import fastjsonschema
asked = []
real = fastjsonschema.compile
fastjsonschema.compile = lambda schema, *a, **k: asked.append(schema) or real(schema, *a, **k)
import functions.gateway.handler
from functions.gateway import schema_checks
print(json.dumps({"compiled": len(asked), "checks": sorted(
    check.__module__ for check in schema_checks._compiled.values()), "modules": sorted(
    name for name in sys.modules if name.split(".")[0] in ("jwt", "cryptography", "functions")
    and name.startswith(("jwt", "cryptography.x509", "functions.gateway.auth.jose")))}))
"""


def test_the_deployed_gateway_builds_its_routes_from_the_deployed_checks(
        endpoint: str, settings: Settings, tmp_path: Path) -> None:
    archive = deployed_zip(settings, "GatewayFunctionName")
    modules = sorted(name for name in archive.namelist()
                     if name.startswith(f"{PACKAGE}/s_") and name.endswith(".py"))
    assert modules, "the gateway's zip has no generated route checks"
    archive.extractall(tmp_path)
    env = {**HANDLER_ENV, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "MESH_POLICY_FILE": str(tmp_path / "meshgate-policy.json")}
    done = subprocess.run([sys.executable, "-I", "-B", "-c", PROBE, str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["compiled"] == 0
    assert seen["checks"] == sorted(name[:-3].replace("/", ".") for name in modules)
    # Its JWT verifier is built (the policy has JWT routes) without PyJWT, which is not in
    # the zip, and without cryptography's x509 (docs/decisions.md, "JWTs verified without
    # PyJWT").
    assert "functions.gateway.auth.jose.signatures" in seen["modules"]
    assert not [name for name in seen["modules"] if not name.startswith("functions.")]
    assert not [name for name in archive.namelist() if name.startswith("jwt/")]
