"""Schema-driven fuzzing of the deployed edge: schemathesis generates requests from the
gateway's own OpenAPI document (valid and invalid ones, with and without credentials) and
sends them through the emulated API Gateway. No answer may be a 5xx, and every answer must
match the document (status, content type, schema)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Err

from infra.settings import Settings
from tests.e2e.edge_support import issue_key, token

pytestmark = pytest.mark.e2e
EXAMPLES = 25  # per operation, bounded: it runs in the default test command


@pytest.fixture(scope="session")
def credentials(settings: Settings) -> dict[str, str]:
    key, _ = issue_key(settings, rate=1000, burst=1000)
    return {"authorization": f"Bearer {token(settings)}", "x-api-key": key}


@pytest.fixture(scope="session")
def edge_document(endpoint: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{endpoint}/openapi.json", timeout=30).json()
    return document


def operations(document: dict[str, Any]) -> list[Any]:
    found = []
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        assert not isinstance(result, Err), result.err()
        found.append(result.ok())
    return found


def test_the_document_has_every_route(edge_document: dict[str, Any]) -> None:
    names = {f"{op.method.upper()} {op.path}" for op in operations(edge_document)}
    assert {"POST /v1/orders", "POST /v1/partner/orders", "GET /v1/products/{sku}",
            "POST /v1/reports", "GET /v1/operations/{operation_id}"} <= names


def test_no_generated_request_gets_a_server_error(
    edge_document: dict[str, Any], endpoint: str, credentials: dict[str, str]
) -> None:
    # schemathesis's pytest plugin does not run under this pytest; hypothesis drives it.
    for operation in operations(edge_document):
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            # Credentials ride on every request, so schemathesis's "ignored auth" probe
            # (drop the credentials, expect 401) cannot apply; test_edge_auth covers it.
            case.call_and_validate(base_url=endpoint, headers=credentials, timeout=30,
                                   excluded_checks=[checks.ignored_auth])

        call()
