"""Group commit of concurrent single enqueues."""

from __future__ import annotations

import asyncio

import pytest
from redis_server import RedisServer

import jobqueue
from jobqueue.batching import GroupCommit


async def test_a_lone_call_is_sent_at_once_and_concurrent_ones_share_round_trips() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        sent.append(items)
        if len(sent) == 1:
            await gate.wait()  # the first round trip is slow; others pile up behind it
        return [i * 10 for i in items]

    g: GroupCommit[int, int] = GroupCommit(send, max_batch=3)
    first = asyncio.create_task(g.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(g.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert sent == [[1], [2, 3, 4], [5, 6]]
    assert await g.submit(7) == 70 and sent[-1] == [7]


async def test_a_failed_round_trip_fails_every_waiter_of_that_batch_only() -> None:
    calls = 0
    gate = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            return items
        if calls == 2:
            raise ConnectionError("redis went away")
        return items

    g: GroupCommit[int, int] = GroupCommit(send)
    first = asyncio.create_task(g.submit(1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(g.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 1
    for w in waiting:
        with pytest.raises(ConnectionError):
            await w
    assert await g.submit(4) == 4


async def test_concurrent_enqueues_all_land_in_redis(redis_server: RedisServer, redis: object) -> None:
    cfg = jobqueue.build_config({"queue_name": "gc", "redis": {"url": redis_server.url}})
    async with jobqueue.Queue(cfg) as q:
        ids = await asyncio.gather(*(q.enqueue("t", i, job_id=f"j{i}") for i in range(300)))
        again = await asyncio.gather(*(q.enqueue("t", i, job_id=f"j{i}") for i in range(5)))  # idempotent
        stats = await q.stats()
    assert sorted(ids) == sorted(f"j{i}" for i in range(300)) and again == [f"j{i}" for i in range(5)]
    assert stats.pending == 300
