"""Raw entries pushed straight into the queue's Redis lists by other programs (or attackers).

Whatever is in a pending list, the worker must not crash: each entry ends in the dead-letter
queue with a reason and its payload kept byte for byte, and the real jobs around it complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from jobqueue import HandlerRegistry, Job, Queue, Worker, build_config
from jobqueue.config import Config
from jobqueue.keys import QueueKeys

QUEUE = "badinput"
KEYS = QueueKeys(QUEUE, ("high", "low"))
MIB = 1024 * 1024

#: (name, raw list entry, expected DLQ reason); the name is only for failure messages.
RAW: list[tuple[str, bytes, str]] = [
    ("not JSON", b"this is not json", "malformed payload"),
    ("empty string", b"", "malformed payload"),
    ("invalid UTF-8", b"\xff\xfe\x00garbage\x80", "malformed payload"),
    ("JSON null", b"null", "malformed payload"),
    ("JSON list", b"[1, 2, 3]", "malformed payload"),
    ("JSON number", b"42", "malformed payload"),
    ("JSON string", b'"just a string"', "malformed payload"),
    ("wrong types", b'{"id": 5, "retries": "many", "priority": ["x"]}', "malformed payload"),
    ("path-like id", b'{"id": "../../etc/passwd", "type": "ok"}', "malformed payload"),
    ("negative max_retries", b'{"type": "ok", "max_retries": -3}', "malformed payload"),
    ("NaN timeout", b'{"type": "ok", "timeout_s": NaN}', "malformed payload"),
    ("nested 100k deep", b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed payload"),
    ("8 MiB of binary", b"\xde\xad\xbe\xef" * (2 * MIB), "malformed payload"),
    ("8 MiB unterminated string", b'{"type": "ok", "payload": "' + b"a" * (8 * MIB), "malformed payload"),
    ("unknown type", b'{"type": "no_such_handler"}', "no handler"),
    ("import path as type", b'{"type": "os:system", "payload": "touch /tmp/pwned"}', "no handler"),
    ("missing payload field", b'{"type": "needs_field", "payload": {}}', "max retries exceeded"),
]


def worker_config(server: RedisServer, **worker: Any) -> Config:
    return build_config(
        {
            "queue_name": QUEUE,
            "redis": {"url": server.url},
            "worker": {"count": 4, "heartbeat_ttl": "2s", "handler": "jobqueue.handlers:noop", **worker},
            "observability": {"metrics_port": 0},
        }
    )


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    async def ok(job: Job) -> None:
        pass

    async def needs_field(job: Job) -> None:
        job.payload["n"]  # KeyError when the field is missing

    reg.register("ok", ok)
    reg.register("needs_field", needs_field)
    return reg


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met within the deadline"
        await asyncio.sleep(0.05)


@pytest.fixture
async def running_worker(redis: Redis, redis_server: RedisServer) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(worker_config(redis_server), registry=registry()).run(stop))
    yield task
    assert not task.done(), f"the worker stopped by itself: {task}"
    stop.set()
    await asyncio.wait_for(task, 10)  # re-raises if the worker crashed
    for _ in range(5):
        await asyncio.sleep(0)  # let the closed connections' transports finish closing on this loop


async def test_every_raw_entry_is_dead_lettered_with_its_reason_and_payload_kept(
    redis: Redis, redis_server: RedisServer, running_worker: asyncio.Task[None]
) -> None:
    async with Queue(worker_config(redis_server)) as queue:
        before = [await queue.enqueue("ok", {"i": i}, priority="high" if i % 2 else "low") for i in range(10)]
        for i, (_, raw, _) in enumerate(RAW):
            await redis.lpush(KEYS.pending("high" if i % 3 == 0 else "low"), raw)
        after = [await queue.enqueue("ok", {"i": i}) for i in range(10)]

    async def settled() -> bool:
        return int(await redis.zcard(KEYS.dead)) >= len(RAW) and int(await redis.llen(KEYS.completed)) >= 20

    await eventually(settled)
    assert not running_worker.done()

    dead: dict[bytes, dict[bytes, bytes]] = {}
    for job_id in await redis.zrange(KEYS.dead, 0, -1):
        record = await redis.hgetall(KEYS.job(job_id.decode()))
        dead[record[b"data"]] = record
    for name, raw, reason in RAW:
        assert raw in dead, f"{name}: not in the dead-letter queue"
        record = dead[raw]
        assert record[b"reason"].decode() == reason, name
        assert record[b"error"], f"{name}: no error text"
        assert record[b"state"] == b"dead"
        assert record[b"dead_ms"]
    assert b"KeyError" in dead[RAW[-1][1]][b"error"]
    assert len(dead) == len(RAW), "something besides the raw entries was dead-lettered"

    done_ids = {json.loads(c)["id"] for c in await redis.lrange(KEYS.completed, 0, -1)}
    assert set(before + after) <= done_ids, "a real job was lost among the raw entries"
    assert not await redis.zcard(KEYS.active)
    assert not await redis.llen(KEYS.pending("high")) and not await redis.llen(KEYS.pending("low"))


async def test_a_raw_entry_that_is_a_valid_job_runs_like_one(redis: Redis, running_worker: asyncio.Task[None]) -> None:
    # JSON that validates as a Job (here with an infinite per-job timeout) is simply run.
    await redis.lpush(KEYS.pending("low"), b'{"type": "ok", "timeout_s": Infinity}')

    async def done() -> bool:
        return int(await redis.llen(KEYS.completed)) == 1

    await eventually(done)
    assert not await redis.zcard(KEYS.dead)


async def test_a_key_of_the_wrong_type_stalls_claims_but_not_the_worker(
    redis: Redis, redis_server: RedisServer, running_worker: asyncio.Task[None]
) -> None:
    # Someone overwrites a pending list with a string: claims fail (WRONGTYPE) until it is fixed.
    async with Queue(worker_config(redis_server)) as queue:
        job_id = await queue.enqueue("ok", priority="low", delay=0.5)
    await redis.set(KEYS.pending("high"), b"oops")

    async def failing_for_a_while() -> bool:
        return int(await redis.llen(KEYS.pending("low"))) == 1

    await eventually(failing_for_a_while)
    assert not running_worker.done()
    await redis.delete(KEYS.pending("high"))

    async def completed() -> bool:
        return job_id.encode() in b"".join(await redis.lrange(KEYS.completed, 0, -1))

    await eventually(completed)
