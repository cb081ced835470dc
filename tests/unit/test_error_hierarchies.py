"""One error hierarchy per package (issue 12): every error class under ``functions`` and
``infra`` says its ``code`` (unique in its package) and whether it is ``retriable``; the
adapters' translation of AWS SDK errors decides retriable by the cause; the edge guard fails
closed (503) on a store's known errors and lets anything else through to the 500 answer,
which names nothing internal."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from fastapi.testclient import TestClient

import functions
import infra
from bus.errors import MeshError
from functions.errors import FunctionError
from functions.gateway.auth.errors import AuthError, KeySetUnavailable
from functions.gateway.guard import Caller, EdgeGuard
from functions.gateway.problems import EdgeRefusal
from functions.gateway.ratelimit.bucket import Decision, Limit
from functions.gateway.ratelimit.dynamodb import RateLimitError, RateLimitRefused
from functions.shared.dynamodb import transient
from infra.errors import InfraError, KafkaAdminFailed, NotReachable
from tests.unit.edge_support import ORDER, ORDERS, PROBLEM, assert_problem, edge, route

# Modules whose import needs more than the package (a Lambda entry point reading its
# environment at import) are skipped: their errors are defined in the modules walked.
SKIP = ("functions.gateway.handler", "functions.authorizer.handler", "infra.cli.main")


def _import_all(package: ModuleType) -> None:
    path = package.__path__
    for info in pkgutil.walk_packages(path, f"{package.__name__}."):
        if info.name.startswith(SKIP):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional dependency of one module: not an error family
            continue


def _subclasses(root: type[BaseException]) -> Iterator[type[BaseException]]:
    for cls in root.__subclasses__():
        yield cls
        yield from _subclasses(cls)


@pytest.mark.parametrize(("package", "root"), [(functions, FunctionError), (infra, InfraError)])
def test_every_error_has_a_unique_code_and_a_retriable_flag(
        package: ModuleType, root: type[Exception]) -> None:
    _import_all(package)
    prefix = f"{package.__name__}."
    classes = [root, *(c for c in _subclasses(root) if c.__module__.startswith(prefix))]
    assert len(classes) >= 5, classes  # the walk found the families
    codes: dict[str, str] = {}
    for cls in classes:
        code = getattr(cls, "code", None)
        assert isinstance(code, str), cls
        assert code, cls
        assert isinstance(getattr(cls, "retriable", None), bool), cls
        assert code not in codes, f"{cls.__qualname__} and {codes[code]} share {code!r}"
        codes[code] = cls.__qualname__


def test_every_error_class_in_functions_and_infra_descends_from_its_root() -> None:
    _import_all(functions)
    _import_all(infra)
    strays = [f"{c.__module__}.{c.__qualname__}" for c in _subclasses(Exception)
              if c.__module__.split(".")[0] in ("functions", "infra")
              and not issubclass(c, FunctionError | InfraError)]
    assert strays == []


def test_functions_errors_are_mesh_errors_so_bus_runners_see_retriable() -> None:
    assert issubclass(FunctionError, MeshError)
    assert RateLimitError("x").retriable
    assert not RateLimitRefused("x").retriable
    assert KeySetUnavailable("x").retriable
    assert not AuthError("x").retriable
    assert EdgeRefusal(503, "r", "d").retriable
    assert not EdgeRefusal(400, "r", "d").retriable


def test_infra_errors_can_say_retriable_per_instance() -> None:
    assert NotReachable("a", "b").retriable
    assert not KafkaAdminFailed("a", "b").retriable
    assert KafkaAdminFailed("a", "b", retriable=True).retriable
    assert str(InfraError("what")) == "what"


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"},
                     "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Op")


@pytest.mark.parametrize(("error", "expected"), [
    (_client_error("ThrottlingException", 400), True),
    (_client_error("InternalServerError", 500), True),
    (_client_error("ServiceUnavailable", 503), True),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (_client_error("ValidationException", 400), False),
    (_client_error("AccessDeniedException", 400), False),
    (_client_error("ResourceNotFoundException", 400), False),
])
def test_aws_errors_are_retriable_only_when_transient(error: Exception, expected: bool) -> None:
    assert transient(error) is expected


class FailingLimiter:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def take(self, key: str, limit: Limit) -> Decision:
        raise self.error


CALLER = Caller(None, None, "198.51.100.7")


@pytest.mark.parametrize("error", [RateLimitError("throttled"), RateLimitRefused("no table")])
def test_the_guard_fails_closed_with_503_on_a_store_error(error: FunctionError) -> None:
    guard = EdgeGuard(limiter=FailingLimiter(error))
    with pytest.raises(EdgeRefusal) as raised:
        asyncio.run(guard.admit(route(ORDERS), CALLER))
    assert (raised.value.status, raised.value.reason) == (503, "ratelimit_unavailable")
    assert raised.value.headers == {"Retry-After": "1"}
    assert raised.value.__cause__ is error


def test_the_guard_lets_an_unknown_error_propagate() -> None:
    bug = ZeroDivisionError("a bug in a store")
    guard = EdgeGuard(limiter=FailingLimiter(bug))
    with pytest.raises(ZeroDivisionError):
        asyncio.run(guard.admit(route(ORDERS), CALLER))


def test_a_store_error_is_a_503_problem_at_the_edge() -> None:
    with edge(limiter=FailingLimiter(RateLimitError("throttled")), workers=False) as gw:
        answer = gw.http.post(ORDERS, json=ORDER)
        assert_problem(answer, 503, "ratelimit_unavailable")
        assert answer.headers["retry-after"] == "1"
        assert not any(gw.produced().values())  # nothing reached the bus


def test_an_unknown_error_is_a_500_problem_without_internals() -> None:
    secret = "table meshgate-secret-internal-name at 10.1.2.3"
    with edge(limiter=FailingLimiter(ZeroDivisionError(secret)), workers=False) as gw, \
            TestClient(gw.app, raise_server_exceptions=False) as http:
        answer = http.post(ORDERS, json=ORDER)
    body = assert_problem(answer, 500, "internal")
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert secret not in answer.text
    assert "ZeroDivisionError" not in answer.text
    assert "Traceback" not in answer.text
    assert body["detail"] == "the gateway could not complete the request"
