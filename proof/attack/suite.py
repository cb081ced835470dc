"""The attack suites in their fast and full sizes, run one after the other, into one report.

Every loop is bounded in count (the plan) and in time (each suite's ``timeout_s``); the
only targets are the broker and the emulator on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bus.envelope import now_ms
from infra.settings import Settings
from proof.attack import edge_cases, mesh_cases, reply_cases
from proof.attack.accounting import CONTROL, Outcome, Report
from proof.attack.broker_acl import CATEGORY as BROKER_ACL
from proof.attack.broker_acl import DEPARTED as ACL_DEPARTED
from proof.attack.broker_acl import OPERATION as OPERATION_NOT_ALLOWED
from proof.attack.broker_acl import run_broker_acl
from proof.attack.dlq_replay import CATEGORY as DLQ_REPLAY
from proof.attack.dlq_replay import run_dlq_replays
from proof.attack.edge_attack import EdgePlan, endpoint_of, loopback, run_edge
from proof.attack.event_replay import CATEGORY as EVENT_REPLAYED
from proof.attack.event_replay import run_event_replays
from proof.attack.fuzz import PARSER_FUZZ, fuzz_parser
from proof.attack.kafka_connect import CATEGORY as KAFKA_CONNECT
from proof.attack.kafka_connect import run_kafka_connect
from proof.attack.key_store_impostor import CATEGORY as KEY_STORE_IMPOSTOR
from proof.attack.key_store_impostor import run_key_store_impostor
from proof.attack.mesh_attack import MeshPlan, run_mesh
from proof.attack.reply_edge import run_edge_hijack
from proof.attack.reply_hijack import run_reply_hijack
from proof.attack.rotation_case import CATEGORY as RETIRED_KEY
from proof.attack.rotation_case import run_retired_key
from proof.attack.service_functions import CATEGORY as SERVICE_FUNCTIONS
from proof.attack.service_functions import run_service_functions

CATEGORIES = (*(f"mesh.{c}" for c in (*mesh_cases.CATEGORIES, *reply_cases.CATEGORIES,
                                        EVENT_REPLAYED, RETIRED_KEY, DLQ_REPLAY,
                                        BROKER_ACL, OPERATION_NOT_ALLOWED, ACL_DEPARTED,
                                        KAFKA_CONNECT, KEY_STORE_IMPOSTOR,
                                        SERVICE_FUNCTIONS)),
              *(f"edge.{c}" for c in (*edge_cases.CATEGORIES, *reply_cases.CATEGORIES)),
              PARSER_FUZZ)


@dataclass(frozen=True)
class Plan:
    mesh: MeshPlan
    edge: EdgePlan
    fuzz_cases: int
    seed: int

    def with_seed(self, seed: int) -> Plan:
        return replace(self, seed=seed, mesh=replace(self.mesh, seed=seed))


FAST = Plan(mesh=MeshPlan(rounds=1, random_records=20, oversized=1, seed=7, timeout_s=60),
            edge=EdgePlan(rounds=1, brute_force=8, concurrency=4, timeout_s=120),
            fuzz_cases=300, seed=7)
FULL = Plan(mesh=MeshPlan(rounds=10, random_records=400, oversized=5, seed=7, timeout_s=300),
            edge=EdgePlan(rounds=4, brute_force=200, concurrency=4, timeout_s=600),
            fuzz_cases=5000, seed=7)


def _in_suite(suite: str, outcomes: list[Outcome]) -> list[Outcome]:
    """Category names carry their suite (``mesh.``/``edge.``); the controls keep theirs."""
    return [replace(o, category=o.category if o.category == CONTROL else f"{suite}.{o.category}",
                    case=f"{suite}: {o.case}") for o in outcomes]


def run(plan: Plan, say: Callable[[str], None] = lambda _: None,
        settings: Settings | None = None) -> Report:
    settings = settings or Settings.resolve()
    bootstrap = loopback(settings.kafka_bootstrap)
    report = Report()

    started = time.monotonic()
    outcomes = fuzz_parser(plan.fuzz_cases, plan.seed, now_ms())
    report.add(outcomes)
    say(f"parser fuzz: {len(outcomes)} cases in {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    mesh, notes = asyncio.run(run_mesh(bootstrap, plan.mesh))
    hijacks, more = asyncio.run(run_reply_hijack(bootstrap, plan.mesh))
    mesh += hijacks
    replays, notes_events = asyncio.run(run_event_replays(settings, plan.mesh))
    mesh += replays
    more += notes_events
    mesh += run_retired_key()  # a key retired by a rotation, in a process that kept running
    dead_letters, notes_dlq = asyncio.run(run_dlq_replays(bootstrap, plan.mesh))
    mesh += dead_letters  # forged, tampered and copied dead letters (bus.delivery.dlq)
    more += notes_dlq
    # a service's SCRAM identity writing where the policy does not let it (infra.policy.acls)
    broker_acls, notes_acl = asyncio.run(run_broker_acl(settings, plan.mesh.timeout_s))
    mesh += broker_acls
    more += notes_acl
    # foreign clients at the secure listeners: no or wrong credentials, untrusted certificates
    connects, notes_connect = asyncio.run(run_kafka_connect(settings))
    mesh += connects
    more += notes_connect
    # an impostor of Secrets Manager serving a forged signing key over TLS
    mesh += run_key_store_impostor()
    # batches each service's Lambda must not serve: another service's topic, a caller the
    # policy refuses (proof.attack.service_functions; a control per service function)
    batches, notes_batches = asyncio.run(run_service_functions(settings, plan.mesh.timeout_s))
    mesh += batches
    more += notes_batches
    report.add(_in_suite("mesh", mesh))
    report.notes += notes + more
    say(f"mesh: {len(mesh)} records in {time.monotonic() - started:.1f}s")

    started = time.monotonic()
    edge, notes = run_edge(settings, plan.edge)
    hijacks, more = asyncio.run(run_edge_hijack(settings, endpoint_of(settings),
                                                plan.edge.rounds, plan.edge.timeout_s))
    edge += hijacks
    report.add(_in_suite("edge", edge))
    report.notes += notes + more
    say(f"edge: {len(edge)} requests in {time.monotonic() - started:.1f}s")
    report.notes += [f"{name}: no case was tried" for name in CATEGORIES
                     if name not in report.categories]
    return report
