"""Runs one suite in its own interpreter (its output kept in a log file) and returns what
it measured: its last JSON line, or why there is none."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report.suites import Suite
from proof.procs import ROOT


def last_json(output: str) -> dict[str, Any] | None:
    """The last line of ``output`` that is a JSON object, or None."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            decoded = json.loads(line)
        except ValueError:
            continue
        if isinstance(decoded, dict):
            return decoded
    return None


def outcome(returncode: int | None, stdout: str, seconds: float, log: str,
            argv: list[str]) -> dict[str, Any]:
    """A suite's entry in report.json (pure): ok only when it exited 0 with a JSON line."""
    result = last_json(stdout)
    if returncode is None:
        error: str | None = "timed out"
    elif returncode != 0:
        error = f"exited {returncode}"
    elif result is None:
        error = "no JSON line in its output"
    else:
        error = None
    if result is not None and result.get("ok") is False:
        error = error or "reported ok: false"
    return {"ok": error is None, "error": error, "seconds": round(seconds, 1),
            "command": argv, "log": log, "result": result}


def run(suite: Suite, fast: bool, scratch: Path, logs: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", suite.module, *suite.argv(fast, scratch)]
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{suite.name}.log"
    print(f"==> {suite.name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    returncode: int | None
    with log.open("w") as err:
        try:
            done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=suite.timeout(fast), check=False)
            stdout, returncode = done.stdout, done.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout
            stdout = out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
            returncode = None
    seconds = time.monotonic() - started
    with log.open("a") as out_log:
        out_log.write("\n--- stdout ---\n" + stdout)
    entry = outcome(returncode, stdout, seconds, str(log.relative_to(ROOT)
                                                     if log.is_relative_to(ROOT) else log),
                    argv[1:])
    print(f"    {suite.name}: {'ok' if entry['ok'] else 'FAILED: ' + str(entry['error'])} "
          f"in {entry['seconds']:g}s", flush=True)
    return entry
