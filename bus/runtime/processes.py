"""A worker that uses every core: N processes of one service in one consumer group.

``MESH_WORKER_PROCESSES`` (an explicit argument, then the variable, then 1; ``auto`` is
``os.cpu_count()``) says how many. A worker's entry point calls ``enter()`` first:

- with 1 process (the default) it returns at once and the process is the worker;
- with N > 1 the process becomes a supervisor (``Supervisor``) that never returns: it runs
  the same command line N times (``sys.orig_argv``) with ``MESH_WORKER_PROCESSES=1`` and
  ``MESH_WORKER_INDEX``/``MESH_WORKER_COUNT``/``MESH_WORKER_PARENT_PID`` set, forwards SIGTERM
  and SIGINT to them, restarts one that dies (with backoff, at most ``RestartBudget.max_deaths``
  deaths in ``window_s``, else it stops the others and exits 1), and on shutdown waits for
  every child (SIGKILL after ``STOP_TIMEOUT_S``), so none outlives it;
- in such a child it arms the parent-death signal (``PR_SET_PDEATHSIG``: SIGTERM when the
  supervisor dies, even by SIGKILL; a thread polling ``getppid`` where prctl is missing) and
  returns: the child is a plain single-process worker that stops on SIGTERM.

The children are full workers: the broker spreads the request topic's partitions over them
(a topic with fewer partitions than processes leaves some idle: ``partition_shortfall``), and
the idempotency store and replay memory are the shared durable stores, so a request
delivered to two of them is still applied once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

ENV_PROCESSES: Final = "MESH_WORKER_PROCESSES"
ENV_INDEX: Final = "MESH_WORKER_INDEX"
ENV_COUNT: Final = "MESH_WORKER_COUNT"
ENV_PARENT: Final = "MESH_WORKER_PARENT_PID"
POLL_S: Final = 0.2
STOP_TIMEOUT_S: Final = 12.0  # below infra.local.workers' 15 s before its SIGKILL
KILL_TIMEOUT_S: Final = 5.0
PARENT_POLL_S: Final = 1.0
PR_SET_PDEATHSIG: Final = 1


class ProcessSettings(BaseModel):
    """How many worker processes: explicit over ``MESH_WORKER_PROCESSES`` over 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    processes: int = Field(default=1, ge=1, le=256)

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None,
                processes: int | str | None = None) -> ProcessSettings:
        source = os.environ if env is None else env
        value: int | str | None = processes if processes is not None else (
            source.get(ENV_PROCESSES) or None)
        if isinstance(value, str) and value.strip().lower() == "auto":
            value = os.cpu_count() or 1
        return cls.model_validate({} if value is None else {"processes": value})


@dataclass(frozen=True)
class ChildInfo:
    """What a supervised child knows of its place (``None``: not supervised)."""

    index: int
    count: int
    parent_pid: int


def child_info(env: Mapping[str, str] | None = None) -> ChildInfo | None:
    source = os.environ if env is None else env
    try:
        return ChildInfo(int(source[ENV_INDEX]), int(source[ENV_COUNT]), int(source[ENV_PARENT]))
    except (KeyError, ValueError):
        return None


def child_environment(base: Mapping[str, str], index: int, count: int,
                      parent_pid: int) -> dict[str, str]:
    """A child's environment: one process (it never supervises again) and its place."""
    return {**base, ENV_PROCESSES: "1", ENV_INDEX: str(index), ENV_COUNT: str(count),
            ENV_PARENT: str(parent_pid)}


def partition_shortfall(topic: str, partitions: int, processes: int) -> str | None:
    """A warning when ``topic`` has fewer partitions than processes (some would idle)."""
    if partitions >= processes:
        return None
    return (f"{topic} has {partitions} partition(s) for {processes} worker processes: "
            f"{processes - partitions} will get no partition and stay idle; give the topic "
            f">= {processes} partitions in the policy")


@dataclass
class RestartBudget:
    """When a dead child is restarted: after ``base_s * 2**k`` (at most ``cap_s``), k the
    deaths in the last ``window_s``; never once ``max_deaths`` are in the window."""

    max_deaths: int = 5
    window_s: float = 60.0
    base_s: float = 0.5
    cap_s: float = 10.0
    deaths: list[float] = field(default_factory=list)

    def on_death(self, now: float) -> float | None:
        """The delay before the restart, or None: give up."""
        self.deaths = [t for t in self.deaths if now - t < self.window_s] + [now]
        if len(self.deaths) > self.max_deaths:
            return None
        return min(self.cap_s, self.base_s * float(2 ** (len(self.deaths) - 1)))


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None


class Supervisor:
    """Runs ``argv`` ``count`` times until SIGTERM/SIGINT (or too many deaths)."""

    def __init__(self, argv: Sequence[str], count: int, *, env: Mapping[str, str] | None = None,
                 budget: RestartBudget | None = None) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self._argv = list(argv)
        self._count = count
        self._env = dict(os.environ if env is None else env)
        self._budget = budget or RestartBudget()
        self._slots = [_Slot(i) for i in range(count)]
        self._signal: int | None = None
        self.restarts = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signal = signum

    def _spawn(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(
            self._argv, env=child_environment(self._env, slot.index, self._count, os.getpid()))
        slot.restart_at = None
        log.info("worker process %d/%d started (pid %d)", slot.index + 1, self._count,
                 slot.process.pid)

    def _check(self, slot: _Slot, now: float) -> bool:
        """Restart a dead child when its time has come; False when the budget is spent."""
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                self._spawn(slot)
                self.restarts += 1
            return True
        code = None if slot.process is None else slot.process.poll()
        if code is None:
            return True
        delay = self._budget.on_death(now)
        pid = slot.process.pid if slot.process is not None else -1
        if delay is None:
            log.error("worker process %d/%d (pid %d) exited with %s: %d deaths within %gs, "
                      "giving up", slot.index + 1, self._count, pid, code,
                      len(self._budget.deaths), self._budget.window_s)
            return False
        log.warning("worker process %d/%d (pid %d) exited with %s; restarting in %.1fs",
                    slot.index + 1, self._count, pid, code, delay)
        slot.restart_at = now + delay
        return True

    def _shutdown(self, signum: int) -> int:
        """SIGTERM (or the signal received) to every live child, then wait; SIGKILL late ones.
        Returns the number of children that had to be killed."""
        live = [s.process for s in self._slots
                if s.process is not None and s.process.poll() is None]
        for process in live:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + STOP_TIMEOUT_S
        killed = 0
        for process in live:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process pid %d did not stop in %gs; killing it", process.pid,
                          STOP_TIMEOUT_S)
                process.kill()
                killed += 1
                try:
                    process.wait(timeout=KILL_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    log.error("worker process pid %d survived SIGKILL", process.pid)
        return killed

    def run(self) -> int:
        """Supervise until a signal (exit 0, or 1 if a child had to be killed) or until the
        restart budget is spent (exit 1)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        gave_up = False
        try:
            for slot in self._slots:
                if self._signal is None:
                    self._spawn(slot)
            while self._signal is None:
                now = time.monotonic()
                if not all(self._check(slot, now) for slot in self._slots):
                    gave_up = True
                    break
                time.sleep(POLL_S)  # a signal handler runs during it (PEP 475)
        finally:
            # Shut down with SIGTERM whatever was received: a worker treats both alike.
            killed = self._shutdown(signal.SIGTERM)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if not gave_up:
            log.info("worker processes stopped (signal %s, %d restart(s))", self._signal,
                     self.restarts)
        return 1 if gave_up or killed else 0


def _libc_prctl() -> Any | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "prctl", None)


def watch_parent(parent_pid: int) -> None:
    """SIGTERM this process when ``parent_pid`` dies: ``PR_SET_PDEATHSIG`` (Linux), else a
    daemon thread polling ``getppid``; if the parent is already gone, SIGTERM now."""
    prctl = _libc_prctl()
    armed = prctl is not None and prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    if os.getppid() != parent_pid:  # died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if armed:
        return

    def poll() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=poll, name="parent-watch", daemon=True).start()


def enter(processes: int | str | None = None, *, argv: Sequence[str] | None = None) -> None:
    """Call first in a worker's entry point: returns in the process that is to be the worker
    (1 process, or a supervised child), else supervises N copies and exits with their code."""
    child = child_info()
    if child is not None:
        watch_parent(child.parent_pid)
        return
    try:
        count = ProcessSettings.resolve(processes=processes).processes
    except ValidationError as exc:
        detail = exc.errors()[0]["msg"]
        raise SystemExit(f"error: {ENV_PROCESSES}: {detail} (a number >= 1, or auto)") from None
    if count == 1:
        return
    raise SystemExit(Supervisor(list(argv if argv is not None else sys.orig_argv), count).run())
