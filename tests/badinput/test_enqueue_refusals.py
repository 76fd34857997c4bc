"""The enqueue API refuses what it cannot store faithfully, and a refusal writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from jobqueue import EnqueueError, JobSpec, Queue, build_config

LIMIT = 2048


def queue(server: RedisServer) -> Queue:
    return Queue(
        build_config({"queue_name": "refusals", "redis": {"url": server.url}, "producer": {"max_payload_bytes": LIMIT}})
    )


def circular() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("over the size limit", {"payload": "x" * LIMIT}, "over producer.max_payload_bytes=2048"),
    ("object()", {"payload": object()}, "not JSON-serialisable"),
    ("nested function", {"payload": {"f": lambda: 1}}, "not JSON-serialisable"),
    ("bytes that are not UTF-8", {"payload": b"\xff\xfe"}, "not JSON-serialisable"),
    ("circular reference", {"payload": circular()}, "not JSON-serialisable"),
    ("unknown priority", {"payload": 1, "priority": "urgent"}, "unknown priority 'urgent'"),
    ("negative delay", {"payload": 1, "delay": -1}, "delay must not be negative"),
    ("id with a slash", {"payload": 1, "job_id": "a/b"}, "invalid job: id"),
    ("id too long", {"payload": 1, "job_id": "x" * 201}, "invalid job: id"),
    ("negative max_retries", {"payload": 1, "max_retries": -1}, "invalid job: max_retries"),
    ("zero timeout", {"payload": 1, "timeout": 0}, "invalid job: timeout_s"),
]


async def keyspace(redis: Redis) -> list[bytes]:
    return sorted(await redis.keys("*"))


@pytest.mark.parametrize(("case", "kwargs", "message"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_enqueue_refuses_with_a_clear_error_and_writes_nothing(
    redis: Redis, redis_server: RedisServer, case: str, kwargs: dict[str, Any], message: str
) -> None:
    async with queue(redis_server) as q:
        with pytest.raises(EnqueueError, match=message.replace("(", r"\(")):
            await q.enqueue("t", **kwargs)
    assert await keyspace(redis) == []


async def test_a_job_just_under_the_limit_is_accepted(redis: Redis, redis_server: RedisServer) -> None:
    async with queue(redis_server) as q:
        job_id = await q.enqueue("t", "x" * (LIMIT - 300))
    assert await redis.exists(q.keys.job(job_id))


@pytest.mark.parametrize("bad_at", [0, 3, 9])
async def test_one_bad_job_in_a_batch_refuses_the_whole_batch(
    redis: Redis, redis_server: RedisServer, bad_at: int
) -> None:
    specs = [JobSpec("t", {"i": i}) for i in range(10)]
    specs[bad_at] = JobSpec("t", {"i": object()})
    async with queue(redis_server) as q:
        with pytest.raises(EnqueueError, match="not JSON-serialisable"):
            await q.enqueue_many(specs, chunk=2)  # validated before the first chunk is sent
    assert await keyspace(redis) == []


async def test_a_refusal_leaves_existing_jobs_untouched(redis: Redis, redis_server: RedisServer) -> None:
    async with queue(redis_server) as q:
        await q.enqueue("t", 1, job_id="keep")
        before = {k: await redis.dump(k) for k in await keyspace(redis)}
        with pytest.raises(EnqueueError):
            await q.enqueue("t", "x" * LIMIT, job_id="keep")
        with pytest.raises(EnqueueError):
            await q.enqueue_many([JobSpec("t", 2, job_id="new"), JobSpec("t", object(), job_id="keep")])
    assert {k: await redis.dump(k) for k in await keyspace(redis)} == before


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_a_non_finite_float_in_a_payload_is_refused(
    redis: Redis, redis_server: RedisServer, value: float
) -> None:
    async with queue(redis_server) as q:
        with pytest.raises(EnqueueError, match="not JSON-serialisable"):
            await q.enqueue("t", {"x": value})
        assert await keyspace(redis) == []
        assert await q.enqueue("t", {"text": "NaN and Infinity are fine as strings"})  # no false refusal
