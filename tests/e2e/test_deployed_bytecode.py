"""The code the emulator's Lambda holds for each deployed function (downloaded through
``GetFunction``, as AWS serves it): the project's modules carry their bytecode beside them,
unchecked hash-based (infra.deploy.bytecode) and compiled from the very source next to it, so
a cold start neither compiles them nor could run a stale ``.pyc``. Built by an interpreter
that is not the functions' Python, the zips must carry no bytecode at all."""

from __future__ import annotations

import importlib.util
import io
import urllib.request
import zipfile

import pytest

from infra.deploy import aws as deploy
from infra.deploy.bytecode import builds_for, pyc_name
from infra.settings import Settings

pytestmark = pytest.mark.e2e
FUNCTIONS = ("GatewayFunctionName", "AuthorizerFunctionName", "OrdersEventsFunctionName")
OWN_PACKAGES = ("bus/", "functions/")
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
