"""One-shot admin commands against the queue's Redis state. Each returns a JSON-able result."""

from __future__ import annotations

import json
from typing import Any

from jobqueue.broker import Broker
from jobqueue.errors import JobQueueError


class UsageError(JobQueueError):
    """Bad admin usage (exit status 2)."""


async def stats(broker: Broker) -> dict[str, Any]:
    s = await broker.queue_stats()
    return {
        "queue": s.queue,
        "priorities": {
            p.name: {
                "pending": p.pending,
                "oldest_age_s": round((s.now_ms - p.oldest_ready_ms) / 1000, 3) if p.oldest_ready_ms else 0.0,
            }
            for p in s.priorities
        },
        "pending": s.pending,
        "in_flight": s.in_flight,
        "scheduled": s.scheduled,
        "scheduled_due": s.scheduled_due,
        "dead_letter": s.dead,
        "live_workers": s.live_workers,
        "completed_kept": s.completed_kept,
        "counters": s.counters,
    }


def _job_view(job_id: str, record: dict[str, str] | None) -> dict[str, Any]:
    if record is None:
        return {"id": job_id, "state": "missing"}
    view: dict[str, Any] = {"id": job_id, **{k: v for k, v in record.items() if k not in ("data", "token")}}
    try:
        view["job"] = json.loads(record.get("data", ""))
    except ValueError:
        view["job_raw"] = record.get("data", "")[:1000]
    return view


async def peek(broker: Broker, queue: str, n: int) -> list[dict[str, Any]]:
    """The next n jobs of a priority (claim order), or of dlq / scheduled / active / completed."""
    if n < 1:
        raise UsageError("--n must be at least 1")
    where = {"dlq": "dead", "dead_letter": "dead", "retry": "scheduled"}.get(queue, queue)
    if where == "completed":
        return [json.loads(x) for x in await broker.recent_completed(n)]
    try:
        ids = await broker.peek_ids(where, n)
    except JobQueueError as err:
        raise UsageError(str(err)) from None
    records = await broker.get_jobs(ids)
    return [_job_view(i, r) for i, r in zip(ids, records, strict=True)]


async def purge_dlq(broker: Broker, yes: bool) -> dict[str, Any]:
    if not yes:
        raise UsageError("purge-dlq deletes every dead-letter job; add --yes to confirm")
    return {"purged": await broker.purge_dlq()}
