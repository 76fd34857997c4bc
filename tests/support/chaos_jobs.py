"""Job handlers of the chaos workload, imported by worker processes (worker.handler_modules).

Every execution writes a start and an end record straight to Redis (CHAOS_RECORD_URL, which
bypasses the fault-injecting proxy), so the verdict can count executions, duplicates and
reclaim times whatever the workers went through. Records are JSON lines in one list:

  start: {"s": 1, "j": id, "p": pid, "a": attempt, "t": ms, "r": ready_ms, "c": claimed_ms, "w": worker,
          "k": token, "e": error}
  end:   {"s": 0, "j": id, "p": pid, "a": attempt, "t": ms, "o": "ok" | "fail", "k": token}

``r``/``c``/``e`` come from the job's record at start: the claim time, and after a reap
``ready_ms`` is the reap time and ``error`` starts with "lease expired".
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

import jobqueue
from jobqueue.keys import QueueKeys

RECORDS_KEY = "chaos:exec"

_clients: dict[str, Redis] = {}


def _redis() -> Redis:
    """One client per process (handlers all run on the worker's one event loop)."""
    url = os.environ["CHAOS_RECORD_URL"]
    if url not in _clients:
        _clients[url] = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
    return _clients[url]


async def _retrying(op: Any) -> Any:
    """Run op() until Redis takes it: the record store restarts during the chaos run."""
    delay = 0.02
    while True:
        try:
            return await op()
        except (RedisError, OSError):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


async def _start(job: jobqueue.Job) -> str:
    r = _redis()
    key = QueueKeys(os.environ["CHAOS_QUEUE"], ()).job(job.id)
    fields = ("ready_ms", "worker", "token", "error", "started_ms")
    ready, worker, token, error, claimed = await _retrying(lambda: r.hmget(key, *fields))

    def s(v: bytes | None) -> str:
        return v.decode() if v else ""

    rec = {
        "s": 1,
        "j": job.id,
        "p": os.getpid(),
        "a": job.attempt,
        "t": time.time_ns() // 1_000_000,
        "r": int(ready or 0),
        "c": int(claimed or 0),
        "w": s(worker),
        "k": s(token),
        "e": s(error)[:60],
    }
    await _retrying(lambda: r.rpush(RECORDS_KEY, json.dumps(rec, separators=(",", ":"))))
    return s(token)


async def _end(job: jobqueue.Job, token: str, outcome: str) -> None:
    rec = {"s": 0, "j": job.id, "p": os.getpid(), "a": job.attempt, "t": time.time_ns() // 1_000_000, "o": outcome}
    rec["k"] = token
    await _retrying(lambda: _redis().rpush(RECORDS_KEY, json.dumps(rec, separators=(",", ":"))))


@jobqueue.job("chaos")
async def chaos(job: jobqueue.Job) -> None:
    """Sleeps payload["run_ms"] and succeeds."""
    token = await _start(job)
    await asyncio.sleep(int(job.payload["run_ms"]) / 1000)
    await _end(job, token, "ok")


@jobqueue.job("poison")
async def poison(job: jobqueue.Job) -> None:
    """Fails on every attempt: a designated poison job that must end in the dead-letter queue."""
    token = await _start(job)
    await _end(job, token, "fail")
    raise RuntimeError("poison job: always fails")
