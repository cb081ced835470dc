"""A function's cold start as Lambda runs it, with and without bytecode in its zip
(``python -m bench.zip_cold_start [--function gateway] [--runs 9]``).

Lambda unpacks a zip into a read-only ``/var/task``, so a module without a ``.pyc`` in the zip
is compiled from source at every cold start (``infra.deploy.bytecode``). This builds the
function's zip twice in the same run, as ``meshgate deploy`` builds it (with bytecode) and as it
was built before (sources only, the baseline), unpacks each into a read-only folder, and
times a fresh interpreter (``-I -B``: nothing from this machine's environment, no bytecode
written) importing the function's handler module, the two alternated (ABBA). The handler is
configured as a deployment configures it (the policy bundle, table names, a region); nothing
is called over the network. Prints percentiles, the ratio and the machine; the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench import stats
from bench.machine import describe
from infra.deploy import package
from infra.deploy.bytecode import builds_for
from infra.deploy.pipeline import bundle_for_functions
from infra.settings import Settings
from infra.stack.functions import FUNCTIONS, FunctionSpec

SIDES = ("bytecode", "sources")
# What a deployment sets for the edge (infra.stack); the handler builds its app at import.
HANDLER_ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "MESH_RATE_LIMIT_TABLE": "bench-rate",
               "MESH_API_KEYS_TABLE": "bench-keys", "MESH_OPERATIONS_TABLE": "bench-ops"}
PROBE = ("import sys, time; sys.path.insert(0, {root!r}); started = time.perf_counter(); "
         "import {module}; print((time.perf_counter() - started) * 1000)")


def unpacked(zip_path: Path, target: Path) -> Path:
    """The zip's files in ``target``, read-only as in ``/var/task``."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    subprocess.run(["chmod", "-R", "a-w", str(target)], check=True)
    return target


def import_ms(root: Path, module: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-I", "-B", "-c",
                           PROBE.format(root=str(root), module=module)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: error: importing {module} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def run(spec: FunctionSpec, settings: Settings, runs: int, work: Path) -> dict[str, Any]:
    # the baseline: the zip as it was built before, sources only; both get what the deploy
    # bundles (the policy, and for the gateway its routes' checks: infra.deploy.validators)
    bundle = bundle_for_functions(settings, work / "bundle")
    built = {side: package.build(spec, settings, bundle.files_for(spec), target_dir=work / side,
                                 bytecode=side == "bytecode") for side in SIDES}
    roots = {side: unpacked(built[side].path, work / f"task-{side}") for side in SIDES}
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), **HANDLER_ENV,
           "MESH_POLICY_FILE": str(bundle.policy)}
    module = spec.handler.rsplit(".", 1)[0]
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for index in range(runs):
        for side in stats.round_order(SIDES, index):
            times[side].append(import_ms(roots[side], module, env))
    summary = {side: stats.summarize(times[side]) for side in SIDES}
    return {
        "function": spec.name, "module": module, "runs": runs,
        "zip_mb": {side: round(built[side].path.stat().st_size / 1e6, 1) for side in SIDES},
        "import_ms": {side: {"p50": round(s.p50_ms, 1), "p90": round(s.p90_ms, 1),
                             "min": round(min(times[side]), 1)} for side, s in summary.items()},
        "ratio_p50": stats.ratio(summary["bytecode"].p50_ms, summary["sources"].p50_ms),
        "machine": describe(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--function", default="gateway",
                        choices=[spec.name for spec in FUNCTIONS if spec.requirements])
    parser.add_argument("--runs", type=int, default=9, help="cold starts per side")
    args = parser.parse_args(argv)
    settings = Settings.resolve()
    if not builds_for(settings.lambda_python):
        raise SystemExit(f"bench: error: this interpreter is not Python {settings.lambda_python}, "
                         "the functions' version: their zips carry no bytecode from it")
    spec = next(spec for spec in FUNCTIONS if spec.name == args.function)
    with tempfile.TemporaryDirectory(prefix="bench-zip-cold-") as work:
        try:
            result = run(spec, settings, args.runs, Path(work))
        finally:
            subprocess.run(["chmod", "-R", "u+w", work], check=False)
    print(f"machine: {result['machine']}")
    for side in SIDES:
        figures = result["import_ms"][side]
        print(f"{side:9} zip {result['zip_mb'][side]} MB, handler import p50 {figures['p50']} ms, "
              f"p90 {figures['p90']} ms, min {figures['min']} ms")
    print(f"bytecode / sources p50: {stats.fmt_ratio(result['ratio_p50'])}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
