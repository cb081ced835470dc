"""``make attack``'s fast suite in the default test run: every hostile record on the real
broker and every hostile request through the emulated API Gateway is refused, none reaches a
handler, and each suite's genuine control does reach one (so the zero is measured, not
assumed)."""

from __future__ import annotations

import pytest

from infra.policy import load_policy
from infra.settings import Settings
from infra.stack.parts import services
from proof.attack.accounting import lines
from proof.attack.suite import CATEGORIES, FAST, run

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_the_fast_attack_suite_is_refused_everywhere(infra_settings: Settings,
                                                      bootstrap: str) -> None:
    report = run(FAST, settings=infra_settings)
    summary = "\n".join(lines(report))
    # The controls: one genuine signed message to the victim worker, one valid HTTP request;
    # both must be seen by the same probes that find nothing for the attacks. And the genuine
    # answer to each hijacked call (one on the mesh, two through HTTP) must reach its caller;
    # and a status read within the limit and a genuine /healthz Lambda event
    # (proof.attack.edge_status_flood, edge_lambda_events); and a message signed with a
    # rotated-in key (proof.attack.rotation_case); and a genuine dead letter replayed by the
    # operator, run once more (proof.attack.dlq_replay).
    # And a genuine event after the copies of a handled one (proof.attack.event_replay).
    # And an order through the edge with a working rate-limit store, beside the broken ones
    # (proof.attack.edge_store_faults). And a SCRAM identity's write to the topic its policy
    # allows, beside the refused one (proof.attack.broker_acl). And the super user's right
    # SCRAM password over SASL_SSL, beside the foreign clients (proof.attack.kafka_connect).
    # And a genuine request to each service's Kafka-triggered Lambda, beside the misdirected
    # and refused batches (proof.attack.service_functions): one per service on Lambda.
    on_lambda = len(services.lambda_services(load_policy(infra_settings.root / "policies"),
                                             infra_settings))
    # And a caller's request for the one operation it may call, beside the refused other
    # operation on the same request topic (proof.attack.broker_acl).
    # And a fresh JWT through the edge's verified-token cache (proof.attack.edge_jwt_cache).
    # And a service still in the policy writing its topic after another left it
    # (proof.attack.broker_acl.departed_attempts).
    # And a signing key read over TLS from an endpoint the function's trust store vouches for,
    # beside the impostors of Secrets Manager (proof.attack.key_store_impostor).
    assert report.control.tried == 17 + on_lambda, summary
    assert report.control.reached_handler == 17 + on_lambda, summary
    for name in CATEGORIES:
        assert report.categories[name].tried >= 1, f"{name} tried nothing\n{summary}"
    assert report.refused == report.tried, summary
    assert report.reached_handler == 0, summary
    assert report.passed(), summary
