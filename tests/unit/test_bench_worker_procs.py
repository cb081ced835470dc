"""The worker-processes sweep's pure parts (``bench.worker_procs``): the ABBA order of the
process counts, the summary per count, its targets and its section of the report."""

from __future__ import annotations

from typing import Any

from bench.cpu import TICKS_PER_S, Snapshot, parse_machine, parse_stat
from bench.report.reasons import WHY_MISSED
from bench.report.render import worker_procs
from bench.report.targets import targets
from bench.sweep_plan import point, side_summary
from bench.worker_procs import parse_args, process_order, summary


def points() -> list[dict[str, Any]]:
    raw = side_summary([1.0] * 100, 100, 0, 1.0)  # 100/s
    one = side_summary([4.0] * 40, 40, 0, 1.0)  # 40/s
    two = side_summary([2.0] * 70, 70, 0, 1.0)  # 70/s
    found = [point("workers", 1, raw, one, {}), point("workers", 2, raw, two, {}),
             point("workers", 2, raw, two, {}), point("workers", 1, raw, one, {})]
    for p, workers in zip(found, (0.5, 0.9, 0.7, 0.5), strict=True):
        p["cores"] = {"raw": {"callers": 0.6, "responder": 0.4, "machine": 1.5, "cores": 2.0},
                      "mesh": {"callers": 0.9, "responder": workers, "machine": 2.0,
                               "cores": 2.0}}
    return found


def test_process_counts_are_visited_abba() -> None:
    assert process_order([1, 2], 1) == [1, 2]
    assert process_order([1, 2], 2) == [1, 2, 2, 1]
    assert parse_args(["--fast"]).rounds == 1
    assert parse_args(["--processes", "1,2,4"]).processes == [1, 2, 4]


def test_summary_per_process_count() -> None:
    by = summary(points())
    assert set(by) == {"1", "2"}
    assert by["1"]["mesh_per_s"] == 40.0
    assert by["1"]["per_s_ratio"] == 0.4
    assert by["2"]["per_s_ratio"] == 0.7
    assert by["2"]["mesh_per_s_over_one_process"] == 1.75
    assert by["2"]["p99_ratio"] == 2.0
    assert by["2"]["mesh_cores"]["responder"] == 0.8  # the mean over its points
    assert by["1"]["raw_cores"]["machine"] == 1.5
    assert by["1"]["mesh_per_worker_core_s"] == 80.0  # 40/s on half a core
    # half a core at 40/s: 12,500 us a request; the raw responder 0.4 core at 100/s
    assert by["1"]["cpu_us_per_request"] == {
        "raw": {"responder": 4000.0, "callers": 6000.0},
        "mesh": {"responder": 12500.0, "callers": 22500.0}}


def test_targets_and_section() -> None:
    by = summary(points())
    result = {"callers": 100, "partitions": 6, "rounds": 2, "seconds": 5.0,
              "by_processes": by, "ok": True}
    suites = {"worker_procs": {"ok": True, "result": result}}
    found = {t.name: t for t in targets(suites) if t.suite == "worker_procs"}
    one = found["answered/s at 100 callers, one worker process / raw"]
    assert one.met is False
    assert one.why.startswith("this run, per answered request: the mesh worker 12500 us of a "
                              "core vs raw 4000 us (3.1x), the mesh callers 22500 us vs raw "
                              "6000 us")
    assert found["answered/s at 100 callers, 2 worker processes / 1"].met is True
    assert found["answered/s at 100 callers, 2 worker processes / 1"].value == "1.75x"
    text = "\n".join(worker_procs({"suites": suites}))
    assert "| 2 | 100.0 | 70.0 | 0.70x | 1.75x |" in text
    assert "| 0.90 / 0.80 / 0.00 / 2.00 of 2 |" in text
    assert "| 12500 / 4000, 22500 / 6000 |" in text
    by["1"].pop("cpu_us_per_request")  # an older result: the written reason
    older = {t.name: t for t in targets(suites)}
    assert older[one.name].why == WHY_MISSED[one.name]
    missing = {t.name: t for t in targets({}) if t.suite == "worker_procs"}
    assert all(t.met is None for t in missing.values())
    assert "Not measured" in "\n".join(worker_procs({"suites": {}}))


def test_cpu_parsers() -> None:
    stat = "42 (python -m x) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 3 0 1 1 1"
    assert parse_stat(stat) == 175.0  # utime 150 + stime 25 ticks, despite the spaces
    busy, total = parse_machine("cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n")
    assert (busy, total) == (155.0, 1000.0)
    before = Snapshot({"w": 1.0}, 0.0, 0.0, 10.0)
    after = Snapshot({"w": 2.5}, 2 * TICKS_PER_S, 4 * TICKS_PER_S, 12.0)
    assert after.cores_since(before) == {"w": 0.75, "machine": 1.0, "cores": 2.0}


def test_side_cores_measure_each_side_while_it_is_loaded() -> None:
    import os
    import time

    from bench.cpu import SideCores

    cores = SideCores({"raw": os.getpid(), "mesh": os.getpid()})
    for _ in range(2):
        with cores.loaded("raw"):
            end = time.process_time() + 0.1
            while time.process_time() < end:  # this process busy: callers and responder
                pass
    means = cores.mean()
    assert set(means) == {"raw"}  # the mesh side was never loaded
    raw = means["raw"]
    assert {"callers", "responder", "machine", "cores"} <= set(raw)
    assert raw["callers"] > 0
    assert raw["responder"] >= raw["callers"]  # this process and its children
    assert raw["machine"] > 0
