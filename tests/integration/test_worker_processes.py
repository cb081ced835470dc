"""N worker processes of one service (``bus.runtime.processes``), as real processes.

Lifecycle (children of a stand-in worker that prints its pid and sleeps until SIGTERM): the
supervisor starts N, forwards SIGTERM and leaves none behind; SIGKILLed itself, its children
notice (parent-death signal) and exit; a child that dies is restarted; children that keep
dying make it exit 1. The mesh side (two ``ServiceWorker`` processes under one supervisor on
the real broker and a DynamoDB table on the real emulator) is in
tests/integration/test_worker_processes_kafka.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.runtime.processes import RestartBudget, Supervisor
from proof.procs import alive

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
# A stand-in worker: the entry point's first call is processes.enter(); a child writes its
# pid and runs until SIGTERM. One write() of a short line is atomic on a pipe; print()
# writes the number and the newline apart when PYTHONUNBUFFERED is set (as on this machine),
# and two children's lines then interleave (seen in CI: a line "pid1pid2", then "\n").
CHILD = """
import os, signal, sys, time
from bus.runtime import processes
processes.enter()
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
os.write(1, f"{os.getpid()}\\n".encode())
while True:
    time.sleep(0.05)
"""


def wait_until(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:g}s: {what}")
        time.sleep(0.05)


class Group:
    def __init__(self, count: int) -> None:
        env = {**os.environ, "MESH_WORKER_PROCESSES": str(count)}
        for name in ("MESH_WORKER_INDEX", "MESH_WORKER_COUNT", "MESH_WORKER_PARENT_PID"):
            env.pop(name, None)
        self.parent = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env,
                                       stdout=subprocess.PIPE)
        self.seen: list[int] = []

    def next_child(self) -> int:
        assert self.parent.stdout is not None
        line = self.parent.stdout.readline()
        assert line, f"the supervisor ended ({self.parent.poll()}) before a child started"
        self.seen.append(int(line))
        return self.seen[-1]

    def children(self, count: int) -> list[int]:
        return [self.next_child() for _ in range(count)]

    def cleanup(self) -> None:
        for pid in [self.parent.pid, *self.seen]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.parent.wait(timeout=WAIT_S)


@pytest.fixture
def group() -> Iterator[Group]:
    made = Group(2)
    try:
        yield made
    finally:
        made.cleanup()


def test_sigterm_stops_every_child_and_the_parent_exits_0(group: Group) -> None:
    children = group.children(2)
    assert len(set(children)) == 2
    assert group.parent.pid not in children
    assert all(alive(pid) for pid in children)
    group.parent.send_signal(signal.SIGTERM)
    assert group.parent.wait(timeout=WAIT_S) == 0
    assert [pid for pid in children if alive(pid)] == []


def test_children_exit_when_the_parent_is_sigkilled(group: Group) -> None:
    children = group.children(2)
    group.parent.send_signal(signal.SIGKILL)
    group.parent.wait(timeout=WAIT_S)
    wait_until(lambda: not any(alive(pid) for pid in children),
               f"children {children} exit after their parent's SIGKILL")


def test_a_dead_child_is_restarted(group: Group) -> None:
    first, second = group.children(2)
    os.kill(first, signal.SIGKILL)
    replacement = group.next_child()
    assert replacement not in (first, second)
    assert alive(second)
    assert alive(replacement)
    group.parent.send_signal(signal.SIGTERM)
    assert group.parent.wait(timeout=WAIT_S) == 0
    assert not alive(replacement)


def test_children_that_keep_dying_make_the_supervisor_exit_1() -> None:
    budget = RestartBudget(max_deaths=3, window_s=60, base_s=0.01, cap_s=0.05)
    supervisor = Supervisor([sys.executable, "-c", "raise SystemExit(3)"], 2, budget=budget)
    assert supervisor.run() == 1
    assert 1 <= supervisor.restarts <= 2  # the third death within the window ends it
