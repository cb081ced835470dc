"""The report's PNGs (matplotlib, Agg backend): latency percentiles and throughput over
each sweep, memory, and the ratios against the baselines. Each function writes one file
and returns its path, or None when there is nothing to draw."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report.render import SWEEP_AXIS
from bench.sweep_plan import SWEEPS

DPI = 110
SIDES = (("raw", "tab:blue"), ("mesh", "tab:orange"))


def _result(report: Mapping[str, Any], suite: str) -> Mapping[str, Any] | None:
    entry = report["suites"].get(suite) or {}
    result = entry.get("result")
    return result if entry.get("ok") and isinstance(result, Mapping) else None


def sweep(report: Mapping[str, Any], name: str, target: Path) -> Path | None:
    r = _result(report, "sweeps")
    points = [p for p in (r or {}).get("points", []) if p["sweep"] == name]
    if not points:
        return None
    xs = [p["x"] for p in points]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    for side, color in SIDES:
        for key, style in (("p50_ms", "-o"), ("p99_ms", "--^")):
            lat.plot(xs, [p[side].get(key) for p in points], style, color=color,
                     label=f"{side} {key.removesuffix('_ms')}")
        thr.plot(xs, [p[side]["per_s"] for p in points], "-o", color=color, label=side)
    for axis in (lat, thr):
        axis.set_xlabel(SWEEP_AXIS[name])
        if name != "partitions" and len(xs) > 1:
            axis.set_xscale("log")
        axis.grid(True, alpha=0.3)
        axis.legend()
    lat.set_ylabel("round trip (ms)")
    lat.set_yscale("log")
    thr.set_ylabel("answered per second")
    fig.suptitle(f"mesh vs raw aiokafka: {SWEEP_AXIS[name]}")
    fig.tight_layout()
    fig.savefig(target, dpi=DPI)
    plt.close(fig)
    return target


def memory(report: Mapping[str, Any], target: Path) -> Path | None:
    r = _result(report, "memory")
    if r is None:
        return None
    fig, (worker, gateway) = plt.subplots(1, 2, figsize=(11, 4),
                                          gridspec_kw={"width_ratios": [2, 1]})
    series = r["worker"].get("series") or []
    if series:
        worker.plot([s[0] for s in series], [s[1] for s in series], "-", color="tab:orange",
                    label="worker VmRSS")
    at = r["worker"].get("rss_mb_at", {})
    worker.plot([int(k) for k in at], list(at.values()), "o", color="black",
                label="checkpoints")
    worker.set_xlabel("handled messages")
    worker.set_ylabel("MiB")
    worker.set_ylim(bottom=0)
    worker.grid(True, alpha=0.3)
    worker.legend()
    worker.set_title("service worker (real broker)")
    gw = r["gateway"]
    names = ["imports", "built", "1st request", f"{gw['requests']} requests"]
    values = [gw["imported_mb"], gw["built_mb"], gw["first_request_mb"],
              gw["after_requests_mb"]]
    gateway.bar(names, values, color="tab:blue")
    gateway.axhline(gw["target_mb"], color="red", linestyle="--", label="target")
    gateway.set_ylabel("MiB")
    gateway.tick_params(axis="x", labelrotation=20)
    gateway.legend()
    gateway.set_title("gateway handler VmRSS")
    fig.tight_layout()
    fig.savefig(target, dpi=DPI)
    plt.close(fig)
    return target


def ratios(report: Mapping[str, Any], target: Path) -> Path | None:
    bars: list[tuple[str, float]] = []
    mesh = _result(report, "mesh_vs_raw")
    if mesh is not None:
        bars += [(label, mesh[key]) for label, key in (
            ("mesh/raw p50", "p50_ratio"), ("mesh/raw p99", "p99_ratio"),
            ("mesh/raw publish", "publish_ratio")) if mesh.get(key) is not None]
    gw = _result(report, "gateway_overhead")
    if gw is not None:
        bars += [(label, gw[key]) for label, key in (
            ("gateway/bare p50", "request_ratio"), ("gateway/bare cold", "cold_ratio"))
            if gw.get(key) is not None]
    e2e = _result(report, "e2e_echo")
    if e2e is not None:
        bars += [(label, e2e[key]) for label, key in (
            ("orders/echo p50 (HTTP)", "p50_ratio"), ("orders/echo p99 (HTTP)", "p99_ratio"))
            if e2e.get(key) is not None]
    if not bars:
        return None
    fig, axis = plt.subplots(figsize=(10, 4))
    axis.barh([b[0] for b in bars], [b[1] for b in bars], color="tab:gray")
    axis.axvline(1.0, color="black", linewidth=1)
    for index, (_, value) in enumerate(bars):
        axis.text(value, index, f" {value:.2f}x", va="center")
    axis.set_xscale("log")
    axis.set_xlabel("ratio against the baseline measured in the same run (log)")
    axis.invert_yaxis()
    fig.tight_layout()
    fig.savefig(target, dpi=DPI)
    plt.close(fig)
    return target


def draw_all(report: Mapping[str, Any], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path | None] = {
        name: sweep(report, name, directory / f"sweep_{name}.png") for name in SWEEPS}
    drawn["memory"] = memory(report, directory / "memory.png")
    drawn["ratios"] = ratios(report, directory / "ratios.png")
    return {name: path for name, path in drawn.items() if path is not None}
