"""One-shot admin commands against the queue's Redis state (``--role=admin --admin-cmd=...``).

Each command returns a JSON-able result; ``jobqueue.roles.admin_render`` turns it into an aligned
table for a terminal. Refusals and bad arguments raise ``UsageError`` (exit status 2); a job
that is not there or a Redis failure raise other ``JobQueueError``s (exit status 1). One-shot
commands never start the metrics/health server.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from jobqueue.api import JobSpec, Queue
from jobqueue.broker import Broker
from jobqueue.durations import parse_duration
from jobqueue.errors import EnqueueError, JobNotFound, JobQueueError

#: Names ``--queue`` accepts besides the priorities, and what they mean in Redis.
ALIASES = {"dlq": "dead", "dead_letter": "dead", "dead": "dead", "retry": "scheduled", "scheduled": "scheduled"}
REQUEUE_BATCH = 1000


class UsageError(JobQueueError):
    """Bad admin usage or a refused command (exit status 2)."""


async def stats(broker: Broker) -> dict[str, Any]:
    """Per priority pending and oldest age; in flight, scheduled, dead letters, workers, lifetime counters."""
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
    for key, value in list(view.items()):
        if (key in ("attempts", "max_retries") or key.endswith("_ms")) and value.lstrip("-").isdigit():
            view[key] = int(value)
    try:
        view["job"] = json.loads(record.get("data", ""))
    except ValueError:
        view["job_raw"] = record.get("data", "")[:1000]
    return view


async def peek(broker: Broker, queue: str, n: int) -> list[dict[str, Any]]:
    """The next n jobs of a priority (claim order), or of dlq / scheduled / active / completed."""
    if n < 1:
        raise UsageError("--n must be at least 1")
    where = ALIASES.get(queue, queue)
    if where == "completed":
        return [{"state": "completed", **json.loads(x)} for x in await broker.recent_completed(n)]
    try:
        ids = await broker.peek_ids(where, n)
    except JobQueueError as err:
        raise UsageError(f"{err}, dlq or completed") from None
    records = await broker.get_jobs(ids)
    return [_job_view(i, r) for i, r in zip(ids, records, strict=True)]


async def purge_dlq(broker: Broker, yes: bool, job_id: str | None = None) -> dict[str, Any]:
    """Delete every dead-letter job (or one); refuses without --yes."""
    if not yes:
        what = f"dead-letter job {job_id}" if job_id else "every dead-letter job"
        raise UsageError(f"purge-dlq deletes {what}; add --yes to confirm")
    purged = await broker.purge_dlq(job_id)
    if job_id is not None and purged == 0:
        raise JobNotFound(f"no dead-letter job with id {job_id!r}")
    return {"purged": purged}


async def requeue_dlq(broker: Broker, yes: bool, job_id: str | None = None, n: int | None = None) -> dict[str, Any]:
    """Move dead jobs (one id, the oldest n, or all) back to their queue with attempts reset.

    Each batch moves atomically (one script); refuses without --yes.
    """
    if job_id is not None and n is not None:
        raise UsageError("requeue-dlq takes --id or --n, not both")
    if n is not None and n < 1:
        raise UsageError("--n must be at least 1")
    if not yes:
        what = (
            f"dead-letter job {job_id}"
            if job_id
            else (f"the {n} oldest dead-letter jobs" if n else "every dead-letter job")
        )
        raise UsageError(f"requeue-dlq moves {what} back to its queue; add --yes to confirm")
    if job_id is not None:
        moved = await broker.requeue_dlq(job_id=job_id)
        if not moved:
            raise JobNotFound(f"no dead-letter job with id {job_id!r}")
        return {"requeued": len(moved), "ids": moved}
    moved = []
    left = n
    while left is None or left > 0:
        batch = await broker.requeue_dlq(n=min(left or REQUEUE_BATCH, REQUEUE_BATCH))
        moved += batch
        if left is not None:
            left -= len(batch)
        if len(batch) < REQUEUE_BATCH:
            break
    return {"requeued": len(moved), "ids": moved}


async def inspect(broker: Broker, job_id: str) -> dict[str, Any]:
    """One job's full record and state: from its hash, or from the kept completed list."""
    record = await broker.get_job(job_id)
    if record is not None:
        view = _job_view(job_id, record)
        zkey = {"active": broker.keys.active, "scheduled": broker.keys.scheduled}.get(record.get("state", ""))
        if zkey is not None:
            score = await broker.redis.zscore(zkey, job_id)
            if score is not None:
                view["lease_deadline_ms" if record["state"] == "active" else "due_ms"] = int(score)
        return view
    for raw in await broker.recent_completed(0):  # 0: the whole kept list (at most completed_keep)
        entry = json.loads(raw)
        if entry.get("id") == job_id:
            return {"state": "completed", **entry}
    raise JobNotFound(f"no job with id {job_id!r} (not queued, running, scheduled, dead, or among the kept completed)")


async def workers(broker: Broker) -> list[dict[str, Any]]:
    """Live workers: where they run, since when, and the jobs each holds now."""
    now = broker.clock.now_ms()
    registered = await broker.list_workers()
    running: dict[str, list[dict[str, Any]]] = {}
    for job_id, deadline, info in await broker.active_jobs():
        started = int(info.get("started_ms", "0") or 0)
        running.setdefault(info.get("worker", "?"), []).append(
            {
                "id": job_id,
                "queue": info.get("prio", ""),
                "attempt": int(info.get("attempts", "0") or 0) + 1,
                "running_s": round((now - started) / 1000, 3) if started else None,
                "lease_left_s": round((deadline - now) / 1000, 3),
            }
        )
    out = []
    for wid, expiry, info in registered:
        if expiry <= now:
            continue  # stopped renewing: the reaper prunes it
        started = int(info.get("started_ms", "0") or 0)
        out.append(
            {
                "id": wid,
                "host": info.get("host", ""),
                "pid": int(info.get("pid", "0") or 0),
                "version": info.get("version", ""),
                "concurrency": int(info.get("concurrency", "0") or 0),
                "started_ms": started,
                "uptime_s": round((now - started) / 1000, 1) if started else None,
                "running": running.pop(wid, []),
            }
        )
    for wid, jobs in running.items():  # leases held by workers no longer registered (crashed)
        out.append(
            {
                "id": wid,
                "host": "",
                "pid": 0,
                "version": "",
                "concurrency": 0,
                "started_ms": 0,
                "uptime_s": None,
                "running": jobs,
                "registered": False,
            }
        )
    return out


async def enqueue(
    queue: Queue,
    priority: str | None,
    payload: str | None,
    *,
    delay: str | None = None,
    job_id: str | None = None,
    job_type: str = "",
) -> dict[str, Any]:
    """Submit one job from the shell; ``created`` is false when a job with that id already exists."""
    try:
        data = json.loads(payload) if payload is not None else None
    except ValueError as err:
        raise UsageError(f"--payload is not valid JSON: {err}") from None
    try:
        delay_td = parse_duration(delay) if delay else timedelta(0)
    except ValueError as err:
        raise UsageError(f"--delay: {err} (e.g. 10s, 1m30s)") from None
    spec = JobSpec(type=job_type, payload=data, priority=priority, delay=delay_td, job_id=job_id)
    try:
        item = queue.build(spec)
    except EnqueueError as err:
        raise UsageError(str(err)) from None
    (created,) = await queue.broker.enqueue([item])
    return {
        "id": item.id,
        "queue": item.priority,
        "created": created,
        "due_ms": item.due_ms or None,
        "delay_s": delay_td.total_seconds(),
    }
