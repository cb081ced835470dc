"""``python -m proof.chaos [--fast] [--only NAME] [--report FILE] [--keep]``: run the chaos
scenarios on the local broker and emulator (shared ones for load, private ones for the
faults that stop them) and print their counts. Exit code 1 if any request was lost or
applied twice, a fault was not injected, a call failed without a clear error, or a scenario
could not run."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit

from infra.settings import Settings
from proof.chaos import (
    broker_kill,
    broker_restart,
    broker_scram,
    cluster_freeze,
    cluster_leader_kill,
    cluster_rolling,
    emulator_restart,
    long_outage,
    lost_answers,
    rebalance,
    slow_consumer,
    worker_kill,
    worker_procs_kill,
)
from proof.chaos.cluster_report import cluster_table
from proof.chaos.runner import Scenario, run_suite, totals_line

SCENARIOS: list[tuple[str, Scenario]] = [
    (broker_restart.NAME, broker_restart.run),
    (broker_kill.NAME, broker_kill.run),
    (broker_scram.NAME, broker_scram.run),
    (worker_kill.NAME, worker_kill.run),
    (worker_procs_kill.NAME, worker_procs_kill.run),
    (slow_consumer.NAME, slow_consumer.run),
    (rebalance.NAME, rebalance.run),
    (emulator_restart.NAME, emulator_restart.run),
    (lost_answers.NAME, lost_answers.run),
    (long_outage.NAME, long_outage.run),
    (cluster_leader_kill.NAME, cluster_leader_kill.run),
    (cluster_freeze.NAME, cluster_freeze.run),
    (cluster_rolling.NAME, cluster_rolling.run),
]
# On a three-node cluster of their own (three JVMs, minutes each): `make chaos` runs them;
# the fast mode (inside `make test`) only when named with --only.
FULL_ONLY = {cluster_leader_kill.NAME, cluster_freeze.NAME, cluster_rolling.NAME}


def chosen_scenarios(fast: bool, only: list[str] | None) -> list[tuple[str, Scenario]]:
    if only:
        return [(n, s) for n, s in SCENARIOS if n in only]
    return [(n, s) for n, s in SCENARIOS if not (fast and n in FULL_ONLY)]


def loopback_only(settings: Settings) -> str | None:
    """Why the run must not start: the load may only target 127.0.0.1."""
    host = settings.kafka_bootstrap.rpartition(":")[0]
    endpoint = urlsplit(settings.endpoint_url or "").hostname
    if host != "127.0.0.1" or endpoint != "127.0.0.1":
        return (f"chaos: error: the broker ({settings.kafka_bootstrap}) and the emulator "
                f"({settings.endpoint_url}) must be on 127.0.0.1; unset MESHGATE_KAFKA_BOOTSTRAP"
                " and MESHGATE_ENDPOINT_URL")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m proof.chaos", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="small load, seconds a scenario")
    parser.add_argument("--only", action="append", choices=[n for n, _ in SCENARIOS],
                        help="run only this scenario (repeatable)")
    parser.add_argument("--report", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the effect logs")
    args = parser.parse_args()
    settings = Settings.resolve()
    refused = loopback_only(settings)
    if refused is not None:
        print(refused, file=sys.stderr)
        return 2
    log_file = settings.local_dir / "chaos" / "chaos.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, filename=log_file, filemode="w",
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(f"chaos: log lines of this run's clients and in-process workers in {log_file}")
    chosen = chosen_scenarios(args.fast, args.only)
    results = asyncio.run(run_suite(chosen, fast=args.fast, bootstrap=settings.kafka_bootstrap,
                                    aws=settings, keep=args.keep,
                                    say=lambda line: print(line, flush=True)))
    if args.report is not None:
        args.report.write_text(json.dumps([r.as_dict() for r in results], indent=2))
    for line in cluster_table(results):
        print(line, flush=True)
    print(totals_line(results), flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
