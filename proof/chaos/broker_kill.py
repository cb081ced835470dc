"""Scenario: the broker is killed with SIGKILL while requests are in flight and its script
starts it again at once, under the stack lock (``flock``), as an operator restarting it would.

The same load, worker and accounting as ``broker_restart``; the fault differs. Two defects of
the broker script are what this scenario would catch (issue 13):

- a killed broker is a zombie (its threads still exiting) for a moment, and ``kafka.sh
  start`` took it for a running broker that does not answer, and refused to start;
- the broker inherited the script's descriptors, so one started under ``flock LOCK`` held
  LOCK for its whole life and every later ``flock LOCK`` waited forever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from proof.chaos.broker_restart import Outage, Sizes, run_with
from proof.chaos.runner import Context, ScenarioResult
from proof.chaos.stack import Private

NAME = "broker-kill9"
SCRIPT_TIMEOUT_S = 150.0
RECOVER_S = 3.0  # after a refused start: by then init has reaped the killed broker


async def _command(*argv: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)
        return -1, f"{argv[0]}: no answer within {SCRIPT_TIMEOUT_S:g}s"
    return process.returncode or 0, out.decode(errors="replace").strip()


async def kill_and_start(broker: Private, _size: Sizes, outage: Outage, workdir: Path) -> None:
    outage.started = time.monotonic()
    pidfile = Path(broker.env["KAFKA_STATE_DIR"], "kafka.pid")
    pid = int(await asyncio.to_thread(pidfile.read_text))
    os.kill(pid, signal.SIGKILL)
    outage.stop_rc = 0
    lock = workdir / "stack.lock"
    outage.start_rc, outage.output = await _command(
        "flock", str(lock), "bash", str(broker.script), "start", env=broker.env)
    outage.ended = time.monotonic()
    free, _ = await _command("flock", "-n", str(lock), "true", env={})
    if free != 0:
        outage.problems.append("the restarted broker holds the lock it was started under")
    if outage.start_rc != 0:  # reported (start_rc); the broker back, so the rest can count
        await asyncio.sleep(RECOVER_S)
        await broker.start()


async def run(ctx: Context) -> ScenarioResult:
    return await run_with(ctx, NAME, kill_and_start)
