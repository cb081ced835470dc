"""What the report is stamped with: machine, versions, commit, time."""

from __future__ import annotations

import datetime
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

from bench.machine import describe
from proof.procs import ROOT

PACKAGES = ("aiokafka", "fastapi", "starlette", "mangum", "pydantic", "cryptography",
            "PyJWT", "fastjsonschema", "httpx", "matplotlib", "numpy")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _from_files(pattern: str, base: Path, prefix: str, suffix: str) -> str:
    found = sorted(base.glob(pattern)) if base.is_dir() else []
    if not found:
        return "unknown"
    return found[-1].name.removeprefix(prefix).removesuffix(suffix)


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10,
                               check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = done.stdout.strip() or "unknown"
    return f"{commit}{' (dirty)' if dirty.stdout.strip() else ''}"


def stamp() -> dict[str, Any]:
    local = ROOT / ".local"
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": describe(),
        "versions": {
            **{name: _version(name) for name in PACKAGES},
            "kafka": _from_files("kafka_2.13-*.jar", local / "kafka-libs", "kafka_2.13-", ".jar"),
            "ministack": _from_files("ministack-*.dist-info",
                                     local / "ministack-venv" / "lib" / "python3.11"
                                     / "site-packages", "ministack-", ".dist-info"),
        },
    }
