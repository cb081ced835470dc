"""Resident memory of a process, from ``/proc/<pid>/status`` (Linux; no psutil).

``parse_status`` is pure (unit-tested); ``rss_mb``/``peak_rss_mb`` read the file.
"""

from __future__ import annotations

from pathlib import Path

KIB_PER_MB = 1024.0


def parse_status(text: str) -> dict[str, int]:
    """The ``Vm*`` fields of a ``/proc/<pid>/status`` text, in KiB (``VmRSS``, ``VmHWM``...)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if name.startswith("Vm") and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name] = int(parts[0])
    return fields


def _field_mb(pid: int | str, name: str) -> float:
    fields = parse_status(Path(f"/proc/{pid}/status").read_text())
    if name not in fields:
        raise RuntimeError(f"/proc/{pid}/status has no {name}")
    return fields[name] / KIB_PER_MB


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size now (``VmRSS``), in MiB."""
    return _field_mb(pid, "VmRSS")


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (``VmHWM``), in MiB."""
    return _field_mb(pid, "VmHWM")
