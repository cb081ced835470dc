"""The service's effect logs: append-only files, in ``fault_worker``'s line format
``<correlation id> <n> <pid>`` (read back with its ``parse_applied``).

- the **runs** log gets one line per handler execution (``record_run``);
- the **ledger** is the effect made idempotent by construction (``apply_once``): under an
  exclusive ``flock`` it appends the request's line only if no line for it is there yet, so
  two runs of one request (a killed worker's and its successor's) leave one effect. The lock
  dies with its process, so a SIGKILL cannot leave it held; one ``write`` either happened
  or not.

Every function blocks (file I/O): call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tests.integration.fault_worker import parse_applied


def _line(correlation_id: str, n: int) -> bytes:
    return f"{correlation_id} {n} {os.getpid()}\n".encode()


def record_run(path: Path, correlation_id: str, n: int) -> None:
    """Append one line (one ``write`` on an ``O_APPEND`` descriptor: atomic between
    processes, and kept by the kernel if this process is killed right after)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, _line(correlation_id, n))
    finally:
        os.close(fd)


def apply_once(path: Path, correlation_id: str, n: int) -> bool:
    """Apply request ``n``'s effect unless it was applied already; True if this call did."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if n in numbers(_read_fd(fd)):
            return False
        os.write(fd, _line(correlation_id, n))
        return True
    finally:
        os.close(fd)  # releases the lock


def _read_fd(fd: int) -> str:
    chunks: list[bytes] = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode()


def numbers(text: str) -> list[int]:
    """The request numbers of a log's complete lines, one entry per line."""
    return [n for _, n, _ in parse_applied(text)]


def read_numbers(path: Path) -> list[int]:
    return numbers(path.read_text()) if path.exists() else []


def read_entries(path: Path) -> list[tuple[str, int, int]]:
    return parse_applied(path.read_text()) if path.exists() else []
