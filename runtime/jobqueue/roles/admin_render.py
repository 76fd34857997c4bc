"""Aligned tables for the admin commands' results (a terminal); scripts get ``--output json``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and rows for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _when(ms: Any) -> str:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (TypeError, ValueError):
        return "-"


def _short(text: Any, width: int = 60) -> str:
    s = "" if text is None else str(text).replace("\n", " ")
    return s if len(s) <= width else s[: width - 3] + "..."


def render(cmd: str, result: Any) -> str:
    """The terminal form of one command's result."""
    return _RENDER.get(cmd, _json)(result)


def _json(result: Any) -> str:
    return json.dumps(result, indent=2, default=str)


def _stats(r: dict[str, Any]) -> str:
    rows = [
        [name, p["pending"], _age(p["oldest_age_s"]) if p["pending"] else "-"] for name, p in r["priorities"].items()
    ]
    c = r["counters"]
    summary = [
        ["in flight", r["in_flight"]],
        ["scheduled", f"{r['scheduled']} ({r['scheduled_due']} due)"],
        ["dead letter", r["dead_letter"]],
        ["live workers", r["live_workers"]],
        ["completed", f"{c.get('completed', 0)} (lifetime; {r['completed_kept']} kept)"],
        ["retried", c.get("retried", 0)],
        ["reaped", c.get("reaped", 0)],
    ]
    return (
        f"queue {r['queue']}\n\n" + table(["PRIORITY", "PENDING", "OLDEST"], rows) + "\n\n" + table(["", ""], summary)
    )


def _jobs(r: list[dict[str, Any]]) -> str:
    if not r:
        return "(no jobs)"
    rows = []
    for j in r:
        job = j.get("job") or {}
        rows.append(
            [
                j.get("id"),
                j.get("prio") or j.get("priority") or job.get("priority", ""),
                j.get("state", ""),
                j.get("attempts", ""),
                job.get("type") or job.get("filepath") or "",
                _when(j.get("dead_ms") or j.get("completed_ms") or j.get("ready_ms") or j.get("enq_ms")),
                _short(j.get("error") or j.get("reason") or ""),
            ]
        )
    return table(["ID", "PRIORITY", "STATE", "ATTEMPTS", "TYPE/FILE", "SINCE", "ERROR"], rows)


def _inspect(r: dict[str, Any]) -> str:
    rows = []
    for key, value in r.items():
        if key == "job":
            continue
        shown = f"{value} ({_when(value)})" if key.endswith("_ms") and value else value
        rows.append([key, shown])
    return table(["FIELD", "VALUE"], rows) + "\n\njob:\n" + json.dumps(r.get("job"), indent=2)


def _workers(r: list[dict[str, Any]]) -> str:
    if not r:
        return "(no live workers)"
    rows = []
    for w in r:
        running = w["running"]
        jobs = ", ".join(f"{j['id']} ({_age(j['running_s'])})" for j in running[:5])
        if len(running) > 5:
            jobs += f", +{len(running) - 5} more"
        since = _when(w["started_ms"]) if w["started_ms"] else "not registered"
        rows.append([w["id"], w["host"], w["pid"], w["version"], f"{len(running)}/{w['concurrency']}", since, jobs])
    return table(["WORKER", "HOST", "PID", "VERSION", "BUSY", "SINCE", "RUNNING"], rows)


def _enqueue(r: dict[str, Any]) -> str:
    if not r["created"]:
        return f"job {r['id']} already exists; nothing changed"
    when = f" due at {_when(r['due_ms'])}" if r["due_ms"] else ""
    return f"enqueued {r['id']} on {r['queue']}{when}"


def _bench(r: dict[str, Any]) -> str:
    head = "bench finished" if r["ok"] else "bench INCOMPLETE (timeout or failures)"
    rows = [[k, v] for k, v in r.items() if k != "ok"]
    return head + "\n" + table(["", ""], rows)


_RENDER: dict[str, Callable[[Any], str]] = {
    "stats": _stats,
    "peek": _jobs,
    "inspect": _inspect,
    "workers": _workers,
    "enqueue": _enqueue,
    "bench": _bench,
    "purge-dlq": lambda r: f"purged {r['purged']} dead-letter job(s)",
    "requeue-dlq": lambda r: (
        f"requeued {r['requeued']} dead-letter job(s)" + (f": {', '.join(r['ids'][:20])}" if r["ids"] else "")
    ),
}
