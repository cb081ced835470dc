"""``meshgate keys rotate SERVICE...`` and ``meshgate keys mesh``: rotate services' mesh
signing keys on the running stack, and list the live keyring.

The steps are ``infra.keys.key_rotation``'s; this module runs them against the stores
(``infra.keys.mesh_keys``), waits the grace period between them and prints each one. Several
services rotate in lockstep (one writer of the keyring, so no update is lost). Interrupted,
the same command resumes the rotation under way instead of starting another.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bus.envelope import now_ms
from bus.security.keys import KeyRing, SecretKeys, generate_ed25519
from infra import tui
from infra.errors import InfraError
from infra.keys import key_rotation, mesh_keys
from infra.settings import Settings
from infra.stack import function_env

Say = Callable[[str], None]
# The longest a message signed before a step may wait to be checked: the mesh's default
# freshness window (a request's deadline is shorter; an event may wait this long).
IN_FLIGHT_S = 300.0
MAX_ROUNDS = 1000


def default_grace_s(settings: Settings) -> float:
    """Every process reloads within one interval; a Lambda refreshes before each
    invocation, so add the longest one (API Gateway's 29 s, within the in-flight bound);
    a message signed just before a step is checked within the freshness window."""
    return function_env.keyring_reload_s(settings) + IN_FLIGHT_S


@dataclass
class Rotation:
    """What one service's rotation did: the key ids and when each step happened (s)."""

    service: str
    old_key: str = ""
    new_key: str = ""
    steps: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        marks = ", ".join(f"{name} +{at:.1f}s" for name, at in self.steps.items())
        return f"rotated {self.service}: {self.old_key} -> {self.new_key} ({marks})"


def rotate_command(settings: Settings, say: Say, services: list[str], *, grace_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], int] = now_ms) -> list[Rotation]:
    if grace_s < function_env.keyring_reload_s(settings):
        raise InfraError(f"keys rotate: a grace of {grace_s:g}s is shorter than the reload "
                         f"interval ({function_env.keyring_reload_s(settings):g}s)",
                         "pass a longer --grace")
    if len(set(services)) != len(services) or not services:
        raise InfraError("keys rotate: name each service once", "e.g. 'keys rotate orders'")
    begun = clock()
    grace_ms = int(grace_s * 1000)
    runs = {service: Rotation(service) for service in services}
    started = dict.fromkeys(services, False)
    waiting: dict[str, int] = {}

    def mark(service: str, step: str, text: str) -> None:
        at = (clock() - begun) / 1000
        runs[service].steps[step] = at
        say(f"[{at:6.1f}s] {service}: {step}: {text}")

    for _ in range(MAX_ROUNDS):
        ring = mesh_keys.require_published(settings)
        before = mesh_keys.document(ring)
        waits: list[int] = []
        acted = False
        for service in services:
            secret = mesh_keys.read_secret(settings, service)
            step = key_rotation.next_step(service, secret, ring, started=started[service],
                                          now_ms=clock(), grace_ms=grace_ms)
            started[service] = True
            acted = acted or step.action not in ("wait", "done")
            run = runs[service]
            if step.action == "wait":
                waits.append(step.wait_until_ms)
                if waiting.get(service) != step.wait_until_ms:
                    waiting[service] = step.wait_until_ms
                    left = max(0, step.wait_until_ms - clock()) / 1000
                    say(f"[{(clock() - begun) / 1000:6.1f}s] {service}: waiting {left:.1f}s: "
                        f"{step.detail}")
            elif step.action == "prepare":
                new, _ = generate_ed25519(service)
                mesh_keys.write_secret(settings, service, SecretKeys(secret.current, new))
                mark(service, "prepare", f"{new.key_id} stored as the next key")
            elif step.action == "publish":
                assert secret.next is not None
                run.old_key, run.new_key = secret.current.key_id, secret.next.key_id
                ring = key_rotation.published(ring, service, secret.next.verify_key(service),
                                              clock())
                mark(service, "publish", step.detail)
            elif step.action == "switch":
                assert secret.next is not None
                run.old_key, run.new_key = secret.current.key_id, secret.next.key_id
                # The secret first: a crash before the keyring is written resumes as
                # finish_switch, and signers never use a key the keyring lacks.
                mesh_keys.write_secret(settings, service, SecretKeys(secret.next))
                ring = key_rotation.switched(ring, service, secret.next.key_id, clock())
                mark(service, "switch", step.detail)
            elif step.action == "finish_switch":
                run.new_key = secret.current.key_id
                ring = key_rotation.switched(ring, service, secret.current.key_id, clock())
                mark(service, "switch", step.detail)
            elif step.action == "retire":
                ring = key_rotation.retired(ring, service)
                mark(service, "retire", step.detail)
                run.new_key = run.new_key or secret.current.key_id
        if mesh_keys.document(ring) != before:
            mesh_keys.publish_keyring(settings, ring, lambda _: None)
        if acted:
            continue  # read the stores again: each step follows from what they hold
        if not waits:
            break
        sleep(max(0.0, (min(waits) - clock()) / 1000))
    else:
        raise InfraError("keys rotate: the rotation did not finish", "run it again to resume")
    for run in runs.values():
        say(run.line())
    return list(runs.values())


HEADERS = ("KEY ID", "SERVICE", "STATE", "SINCE (UTC)")


def mesh_rows(ring: KeyRing) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for key in sorted(ring, key=lambda k: (k.service, k.key_id)):
        status = ring.status(key.key_id)
        since = ("-" if not status.since_ms else datetime.fromtimestamp(
            status.since_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"))
        rows.append((key.key_id, key.service, status.state, since))
    return rows


def mesh_command(settings: Settings, say: Say, *, as_json: bool = False) -> KeyRing:
    ring = mesh_keys.require_published(settings)
    if as_json:
        say(json.dumps(ring.to_dict()))
    else:
        tui.show_table(say, HEADERS, mesh_rows(ring), title="mesh keyring")
        say(f"{len(ring)} key(s) in {function_env.keyring_parameter(settings)}")
    return ring
