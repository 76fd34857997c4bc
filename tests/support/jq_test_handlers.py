"""Handlers used by tests that run real worker processes (imported via worker.handler_modules).

Each records its runs in Redis (the test reads them), so a test can see duplicates and crashes.
"""

from __future__ import annotations

import asyncio
import os

from redis.asyncio import Redis

import jobqueue

_redis: Redis | None = None


def _client() -> Redis:
    global _redis
    if _redis is None:
        _redis = Redis.from_url(os.environ["JQ_TEST_REDIS_URL"])
    return _redis


@jobqueue.job("sleep")
async def sleep(job: jobqueue.Job) -> None:
    """payload: {"s": seconds}. Records 'started' then 'done' with the attempt number."""
    r = _client()
    await r.rpush(f"test:runs:{job.id}", f"start:{job.attempt}:{os.getpid()}")
    await asyncio.sleep(float(job.payload["s"]))
    await r.rpush(f"test:runs:{job.id}", f"done:{job.attempt}:{os.getpid()}")
