"""Issue 11, defects 7 and 8, on the deployed stack: the async status route is rate limited
through the real HTTP endpoint (429 with Retry-After beyond ``edge.status_rate_limit``), and
unreadable events invoked directly on the deployed functions get clean refusals from a
process that lives on. The same cases run in ``make attack`` (proof/attack/edge_*.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from infra.deploy import aws as deploy
from infra.settings import Settings
from proof.attack.accounting import CONTROL
from proof.attack.edge_attack import credentials, status_limit
from proof.attack.edge_lambda_events import gateway_refusal, healthz_event, run_lambda_events
from proof.attack.edge_status_flood import status_flood


def test_polling_the_status_route_beyond_its_limit_gets_429(endpoint: str,
                                                            settings: Settings) -> None:
    run = f"e2e{uuid.uuid4().hex[:8]}"
    with credentials(settings) as creds:
        outcomes, notes = asyncio.run(status_flood(endpoint, creds, run, status_limit(settings),
                                                   time.monotonic() + 120))
    assert notes == []
    [control] = [o for o in outcomes if o.category == CONTROL]
    assert (control.reached_handler, control.reason) == (1, "200")  # the genuine read
    flood = [o for o in outcomes if o.category != CONTROL]
    assert flood, "the flood stayed within the limit"
    assert all(o.refused and o.reason == "429 rate_limited" for o in flood), flood


def test_unreadable_events_are_refused_by_a_process_that_lives_on(endpoint: str,
                                                                  settings: Settings) -> None:
    outcomes, notes = run_lambda_events(settings)
    assert notes == []
    [control] = [o for o in outcomes if o.category == CONTROL]
    assert control.reached_handler == 1
    refused = [o for o in outcomes if o.category != CONTROL]
    assert len(refused) >= 19
    assert all(o.refused for o in refused), [o for o in outcomes if not o.refused]
    # And the next genuine request is served by the same warm process.
    outputs = deploy.stack_outputs(settings)
    assert outputs is not None
    lam = deploy.client(settings, "lambda")

    def invoke(payload: bytes) -> dict[str, object]:
        result = lam.invoke(FunctionName=outputs["GatewayFunctionName"], Payload=payload)
        assert "FunctionError" not in result
        answer: dict[str, object] = json.loads(result["Payload"].read())
        return answer

    before = gateway_refusal(invoke(b"null"))
    assert invoke(json.dumps(healthz_event()).encode())["statusCode"] == 200
    after = gateway_refusal(invoke(b"{}"))
    assert before is not None
    assert after is not None
    assert after[0] == before[0]  # the same process: it was not restarted
    assert after[1] > before[1]
