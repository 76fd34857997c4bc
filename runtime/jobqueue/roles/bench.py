"""``--admin-cmd=bench``: the seed's built-in load test, measuring what a user waits for.

It enqueues ``count`` jobs at ``rate`` per second into one priority and follows them to the end
through the workers' own completion records (the completed list holds each job's completion
time), so the figures are end to end and need no cooperation from the handler:

- latency of a job = its completion time minus the time it was *due to be sent* by the rate
  schedule (or when it was actually sent, if a batch went out early), so a sender that falls
  behind cannot hide queueing delay (no coordinated omission);
- throughput = jobs completed / (last completion - first send).

The seed measured the wrong thing (how fast it enqueued, and latency from a clock started after
the fact). The workers must already be running; bench does not start any.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from jobqueue.api import JobSpec, Queue

POLL_S = 0.01
"""How often the completed list is read while jobs are outstanding."""
PAGE = 500


@dataclass
class _Follow:
    prefix: str
    seen_head: Any = None
    done_ms: dict[str, int] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(q / 100 * len(sorted_values)), 1)
    return sorted_values[rank - 1]


async def _read_new(queue: Queue, follow: _Follow) -> None:
    """Completion records written since the last read (newest first, paged until the last seen head)."""
    redis, key = queue.redis, queue.keys.completed
    start = 0
    new_head: Any = None
    while True:
        page: list[Any] = await redis.lrange(key, start, start + PAGE - 1)
        if not page:
            break
        if new_head is None:
            new_head = page[0]
        hit = False
        for raw in page:
            if raw == follow.seen_head:
                hit = True
                break
            if raw.startswith(b'{"id":"' + follow.prefix.encode()):
                entry = json.loads(raw)
                follow.done_ms[entry["id"]] = int(entry["completed_ms"])
        if hit or len(page) < PAGE:
            break
        start += PAGE
    if new_head is not None:
        follow.seen_head = new_head


async def run(
    queue: Queue, count: int, rate: float, priority: str, *, timeout_s: float, job_type: str = ""
) -> dict[str, Any]:
    """Send, follow, report. ``ok`` is false when not every job completed within the timeout."""
    run_id = secrets.token_hex(4)
    prefix = f"bench-{run_id}-"
    follow = _Follow(prefix)
    follow.seen_head = await queue.redis.lindex(queue.keys.completed, 0)  # older records are not ours
    ids = [f"{prefix}{i}" for i in range(count)]
    chunk = max(1, min(500, int(rate / 50) if rate > 0 else 500))
    start_ms = time.time() * 1000
    start_mono = time.monotonic()
    due_ms = {job_id: start_ms + (i / rate * 1000 if rate > 0 else 0.0) for i, job_id in enumerate(ids)}

    sent = 0
    base_ms: dict[str, float] = {}

    async def send() -> None:
        nonlocal sent
        for i in range(0, count, chunk):
            if rate > 0:
                ahead = i / rate - (time.monotonic() - start_mono)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing to the schedule, not waiting for a condition
            now_ms = time.time() * 1000
            for j in ids[i : i + chunk]:
                base_ms[j] = min(due_ms[j], now_ms)  # sent early (chunking) or late (sender behind)
            await queue.enqueue_many(
                [
                    JobSpec(type=job_type, payload={"bench": run_id}, priority=priority, job_id=j)
                    for j in ids[i : i + chunk]
                ]
            )
            sent = min(i + chunk, count)

    sender = asyncio.create_task(send())
    deadline = time.monotonic() + timeout_s
    dead: set[str] = set()
    last_dead_check = 0.0
    try:
        while time.monotonic() < deadline:
            await _read_new(queue, follow)
            if time.monotonic() - last_dead_check > 0.2:
                last_dead_check = time.monotonic()
                died: list[Any] = await queue.redis.zrangebyscore(queue.keys.dead, int(start_ms), "+inf")
                dead = {i.decode() for i in died if i.startswith(prefix.encode())}
            if sender.done() and len(follow.done_ms) + len(dead) >= count:
                break
            await asyncio.sleep(POLL_S)
        if sender.done():
            sender.result()
    finally:
        if not sender.done():
            sender.cancel()
    unseen = await _completed_unseen(queue, [i for i in ids[:sent] if i not in follow.done_ms and i not in dead])
    latencies = sorted(max(follow.done_ms[i] - base_ms[i], 0.0) / 1000 for i in follow.done_ms)
    completed = len(follow.done_ms) + unseen
    span_s = (max(follow.done_ms.values()) - start_ms) / 1000 if follow.done_ms else math.nan
    return {
        "ok": completed == count,
        "jobs": count,
        "completed": completed,
        "dead_lettered": len(dead),
        "unfinished": count - completed - len(dead),
        "sent": sent,
        "priority": priority,
        "target_rate_per_s": rate or None,
        "throughput_per_s": round(len(follow.done_ms) / span_s, 1) if follow.done_ms and span_s > 0 else None,
        "latency_samples": len(latencies),
        "latency_p50_s": _r(percentile(latencies, 50)),
        "latency_p95_s": _r(percentile(latencies, 95)),
        "latency_p99_s": _r(percentile(latencies, 99)),
        "latency_max_s": _r(latencies[-1] if latencies else math.nan),
        "elapsed_s": round(time.monotonic() - start_mono, 3),
        "measured": "per job: completion time (worker's record) minus scheduled (or earlier actual) send time",
    }


async def _completed_unseen(queue: Queue, ids: list[str]) -> int:
    """Sent jobs whose hash is gone although no record of them was read: completed, but the
    completed list was trimmed before bench read it (they count, without a latency sample)."""
    if not ids:
        return 0
    async with queue.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(queue.keys.job(job_id))
        present = await pipe.execute()
    return sum(1 for p in present if not p)


def _r(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 4)
