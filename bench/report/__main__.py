"""``python -m bench.report [--fast] [--only NAME ...] [--out DIR]``: run the suites, write
``report.json``, ``report.md`` and ``report_plots/*.png`` (default ``bench/``). Exits 1 when
a suite failed (missed targets are reported, not failures)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import plots, runner
from bench.report.render import render
from bench.report.stamp import stamp
from bench.report.suites import NAMES, SUITES
from bench.report.targets import as_json, targets
from proof.procs import ROOT

DEFAULT_OUT = ROOT / "bench"


def collect(fast: bool, only: list[str], out: Path) -> dict[str, Any]:
    started = time.monotonic()
    suites: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        for suite in SUITES:
            if not only or suite.name in only:
                suites[suite.name] = runner.run(suite, fast, Path(scratch), out / "report_logs")
    return {
        "mode": "fast" if fast else "full",
        "seconds": round(time.monotonic() - started, 1),
        "stamp": stamp(),
        "suites": suites,
        "targets": as_json(targets(suites)),
        "ok": all(entry["ok"] for entry in suites.values()),
    }


def write(report: dict[str, Any], out: Path) -> None:
    drawn = plots.draw_all(report, out / "report_plots")
    relative = {name: path.relative_to(out).as_posix() for name, path in drawn.items()}
    report["plots"] = relative
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render(report, relative))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark, write one report.")
    parser.add_argument("--fast", action="store_true", help="tiny sizes: seconds, not minutes")
    parser.add_argument("--only", nargs="*", choices=NAMES, default=[],
                        help="run only these suites")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where report.json, report.md and report_plots/ go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = collect(args.fast, args.only, args.out)
    write(report, args.out)
    print(f"report: {args.out / 'report.md'} ({report['seconds']:g}s, "
          f"{'all suites ok' if report['ok'] else 'SOME SUITES FAILED'})")
    for target in report["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        print(f"  {target['suite']}: {target['name']}: {target['value']} "
              f"(target {target['target']}): {state}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
