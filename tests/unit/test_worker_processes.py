"""The pure parts of ``bus.runtime.processes``: how many processes, a child's place, the
partition warning and the restart budget (the processes themselves:
tests/integration/test_worker_processes.py)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from bus.runtime import processes
from bus.runtime.processes import ChildInfo, ProcessSettings, RestartBudget


def test_one_process_by_default() -> None:
    assert ProcessSettings.resolve(env={}).processes == 1
    assert ProcessSettings.resolve(env={"MESH_WORKER_PROCESSES": ""}).processes == 1


def test_explicit_over_env_over_default() -> None:
    env = {"MESH_WORKER_PROCESSES": "3"}
    assert ProcessSettings.resolve(env=env).processes == 3
    assert ProcessSettings.resolve(env=env, processes=2).processes == 2


def test_auto_is_the_cpu_count() -> None:
    expected = os.cpu_count() or 1
    assert ProcessSettings.resolve(env={"MESH_WORKER_PROCESSES": "auto"}).processes == expected
    assert ProcessSettings.resolve(env={}, processes="AUTO").processes == expected


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_nonsense_is_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        ProcessSettings.resolve(env={"MESH_WORKER_PROCESSES": value})


def test_a_child_never_supervises_and_knows_its_place() -> None:
    env = processes.child_environment({"MESH_WORKER_PROCESSES": "2", "OTHER": "x"}, 1, 2, 42)
    assert env["MESH_WORKER_PROCESSES"] == "1"
    assert env["OTHER"] == "x"
    assert processes.child_info(env) == ChildInfo(index=1, count=2, parent_pid=42)
    assert processes.child_info({"OTHER": "x"}) is None


def test_enter_with_one_process_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (processes.ENV_INDEX, processes.ENV_COUNT, processes.ENV_PARENT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MESH_WORKER_PROCESSES", "1")
    processes.enter()  # returns: this process is the worker


def test_enter_refuses_a_bad_count_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (processes.ENV_INDEX, processes.ENV_COUNT, processes.ENV_PARENT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MESH_WORKER_PROCESSES", "none")
    with pytest.raises(SystemExit, match="MESH_WORKER_PROCESSES"):
        processes.enter()


def test_partition_shortfall() -> None:
    assert processes.partition_shortfall("orders.requests", 6, 2) is None
    assert processes.partition_shortfall("orders.requests", 2, 2) is None
    warning = processes.partition_shortfall("x.requests", 1, 3)
    assert warning is not None
    assert "2 will get no partition" in warning


def test_restart_backoff_grows_then_gives_up() -> None:
    budget = RestartBudget(max_deaths=3, window_s=60, base_s=0.5, cap_s=1.5)
    assert [budget.on_death(t) for t in (0.0, 1.0, 2.0)] == [0.5, 1.0, 1.5]
    assert budget.on_death(3.0) is None  # a fourth death within the window


def test_deaths_outside_the_window_are_forgotten() -> None:
    budget = RestartBudget(max_deaths=2, window_s=10, base_s=1, cap_s=10)
    assert budget.on_death(0.0) == 1
    assert budget.on_death(5.0) == 2
    assert budget.on_death(20.0) == 1  # the two earlier deaths are out of the window
