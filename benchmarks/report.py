"""The report of benchmarks/peers.py: medians, paired ratios, the Markdown table, the verdict
against issue 6's targets, and the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from adapters.base import Adapter


@dataclass
class Row:
    """One library's measurements: one value per round, or the reason it has none."""

    key: str
    cls: type[Adapter] | None
    error: str | None = None
    single: list[float] = field(default_factory=list)
    bulk: list[float] = field(default_factory=list)
    process: list[float] = field(default_factory=list)
    processed: list[int] = field(default_factory=list)
    """Jobs counted in each processing run (fewer than N when the window ended it)."""
    pickup_ms: list[float] = field(default_factory=list)
    pickup_lost: int = 0
    notes: list[str] = field(default_factory=list)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def paired_ratio(peer: list[float], base: list[float]) -> float | None:
    pairs = [p / b for p, b in zip(peer, base, strict=False) if b]
    return statistics.median(pairs) if len(pairs) == len(peer) == len(base) and pairs else None


def fmt(v: float | None, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def fratio(v: float | None) -> str:
    return "" if v is None else f" ({v:.2f}x)"


def dist_version(row: Row) -> str:
    if row.cls is None:
        return "?"
    try:
        return version(row.cls.dist)
    except PackageNotFoundError:
        return "?"


def summary(rows: list[Row]) -> dict[str, Any]:
    base = next(r for r in rows if r.key == "jobqueue")
    out: dict[str, Any] = {}
    for r in rows:
        p50, p99 = pct(r.pickup_ms, 0.5), pct(r.pickup_ms, 0.99)
        out[r.key] = {
            "name": r.cls.name if r.cls else r.key,
            "version": dist_version(r),
            "error": r.error,
            "at_least_once": bool(r.cls and r.cls.at_least_once),
            "guarantee": r.cls.guarantee if r.cls else "?",
            "single": median(r.single),
            "single_ratio": paired_ratio(r.single, base.single),
            "bulk": median(r.bulk),
            "bulk_ratio": paired_ratio(r.bulk, base.bulk),
            "process": median(r.process),
            "process_ratio": paired_ratio(r.process, base.process),
            "pickup_p50_ms": p50,
            "pickup_p99_ms": p99,
            "pickup_samples": len(r.pickup_ms),
            "pickup_lost": r.pickup_lost,
            "processed": r.processed,
            "raw": {"single": r.single, "bulk": r.bulk, "process": r.process},
            "notes": r.notes,
        }
    return out


def table(s: dict[str, Any], n: int) -> str:
    """Markdown; ‡k marks a library whose processing runs ended by the window, after k jobs (median)."""
    base = s["jobqueue"]
    lines = [
        "| library | version | if a worker dies mid-job | enqueue single (jobs/s) | enqueue bulk (jobs/s) "
        "| process (jobs/s) | idle pickup p50 / p99 (ms) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for v in s.values():
        if v["error"]:
            lines.append(f"| {v['name']} | {v['version']} | | could not run: {v['error'][:200]} | | | |")
            continue
        lat_ratio = None
        if v["pickup_p50_ms"] and base["pickup_p50_ms"]:
            lat_ratio = v["pickup_p50_ms"] / base["pickup_p50_ms"]
        lost = f", {v['pickup_lost']} lost" if v["pickup_lost"] else ""
        short = ""
        if v["processed"] and min(v["processed"]) < n:
            short = f" ‡{statistics.median(v['processed']):,.0f}"
        lines.append(
            f"| {v['name']} | {v['version']} | {v['guarantee']} "
            f"| {fmt(v['single'])}{fratio(v['single_ratio'])} "
            f"| {fmt(v['bulk'])}{fratio(v['bulk_ratio'])} "
            f"| {fmt(v['process'])}{fratio(v['process_ratio'])}{short} "
            f"| {fmt(v['pickup_p50_ms'], 1)} / {fmt(v['pickup_p99_ms'], 1)}{fratio(lat_ratio)}{lost} |"
        )
    return "\n".join(lines)


def verdict(s: dict[str, Any]) -> str:
    jq = s["jobqueue"]
    peers = {k: v for k, v in s.items() if k != "jobqueue" and not v["error"]}
    alo = {k: v for k, v in peers.items() if v["at_least_once"] and v["process"]}
    lines = []
    if alo and jq["process"]:
        best = max(alo, key=lambda k: alo[k]["process"])
        ratio = jq["process"] / alo[best]["process"]
        ok = "met" if ratio >= 4 else "MISSED"
        lines.append(
            f"- processing: jobqueue {jq['process']:,.0f} jobs/s = {ratio:.2f}x the best at-least-once peer "
            f"({alo[best]['name']}, {alo[best]['process']:,.0f} jobs/s); target ≥ 4x: {ok}"
        )
    lat = {k: v["pickup_p50_ms"] for k, v in peers.items() if v["pickup_p50_ms"] is not None}
    if lat and jq["pickup_p50_ms"] is not None:
        best = min(lat, key=lambda k: lat[k])
        ok = "met" if jq["pickup_p50_ms"] < lat[best] else "MISSED"
        lines.append(
            f"- idle pickup p50: jobqueue {jq['pickup_p50_ms']:.2f} ms; lowest peer {peers[best]['name']} "
            f"{lat[best]:.2f} ms; target lowest of all: {ok}"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    redis_v = subprocess.run(["redis-server", "--version"], check=False, capture_output=True, text=True).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis-server": redis_v.split(" sha=")[0],
        "redis-py": version("redis"),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
