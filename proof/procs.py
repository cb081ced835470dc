"""Child processes of the proof suites and the benchmarks (the chaos workers, the mesh-vs-raw
responders, the memory workers): spawning them (parent side) and stopping them (child side).
bench imports this module; proof never imports bench.

A responder prints ``ready`` on stdout once its clients are started, and one JSON line of
counters when it exits. It stops on SIGTERM/SIGINT, when its stdin reaches EOF (so it cannot
outlive a parent that died), or after ``--max-seconds``, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_profiled = itertools.count(1)
READY = b"ready"
STOP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 5.0


# --- child side ---------------------------------------------------------------------------

def stop_event(max_seconds: float) -> asyncio.Event:
    """An event set by SIGTERM/SIGINT, by EOF on stdin, or after ``max_seconds``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.call_later(max_seconds, stop.set)

    def watch_stdin() -> None:
        # os.read on the raw fd: a daemon thread blocked in sys.stdin's buffered reader
        # would hold its lock when the interpreter shuts down.
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    return stop


def announce_ready() -> None:
    sys.stdout.buffer.write(READY + b"\n")
    sys.stdout.flush()


def report(counters: dict[str, Any]) -> None:
    print(json.dumps(counters), flush=True)


# --- parent side --------------------------------------------------------------------------

@dataclass
class Responder:
    name: str
    process: asyncio.subprocess.Process
    counters: dict[str, Any] = field(default_factory=dict)


async def _stop(responder: Responder) -> None:
    process = responder.process
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()  # EOF: the child's polite stop
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT_S)
    except TimeoutError:
        print(f"bench: {responder.name} did not stop in {STOP_TIMEOUT_S:g}s; killing it",
              file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), KILL_TIMEOUT_S)
        return
    for line in reversed(out.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            decoded = json.loads(line)
            if isinstance(decoded, dict):
                responder.counters = decoded
                break


@asynccontextmanager
async def spawn(name: str, module: str, args: list[str],
                ready_timeout_s: float = 60.0) -> AsyncIterator[Responder]:
    """Run ``python -m module args`` until the block ends; always stopped (or killed).

    With ``BENCH_PROFILE`` set to a folder, the child runs under cProfile and writes
    ``<folder>/<module>-<n>.pstats`` when it stops (where a responder's time goes, on the
    real broker)."""
    profile = os.environ.get("BENCH_PROFILE")
    wrapper: list[str] = []
    if profile:
        out = Path(profile) / f"{module}-{next(_profiled)}.pstats"
        wrapper = ["-m", "cProfile", "-o", str(out)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *wrapper, "-m", module, *args,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    responder = Responder(name, process)
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_timeout_s)
        except TimeoutError:
            raise RuntimeError(f"{name} was not ready within {ready_timeout_s:g}s") from None
        if line.strip() != READY:
            raise RuntimeError(f"{name} exited before it was ready (code {process.returncode}, "
                               f"said {line!r}); see its stderr above")
        yield responder
    finally:
        await _stop(responder)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on now, whose neighbours (+1 to +3) are free too (a
    private broker's controller takes port + 1, its SASL_SSL and SSL listeners + 2 and + 3)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
        if port + 3 <= 65_535 and all(_bindable(port + offset) for offset in (1, 2, 3)):
            return port
    raise RuntimeError("no four free consecutive loopback ports")


def alive(pid: int) -> bool:
    """``pid`` is running (a zombie nobody reaped yet counts as gone); for processes that
    are not this one's children (a supervisor's), which cannot be waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
