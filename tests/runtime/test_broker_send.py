"""Broker's own pipelining (one write, then the replies): script errors stay in their place,
scripts Redis forgot are reloaded, a dropped connection is retried with the client's policy."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis_server import RedisServer

import jobqueue
from jobqueue.broker import Broker, Call, EnqueueItem
from jobqueue.keys import QueueKeys
from jobqueue.redis_conn import make_client

LEASE = 30_000


async def test_an_error_reply_is_returned_in_its_place_and_the_connection_stays_usable(broker: Broker) -> None:
    await broker.claim(0, LEASE, "w")  # both scripts loaded: _send itself does not reload
    await broker.enqueue([])
    calls = [
        broker.enqueue_call([EnqueueItem("a", "low", b'{"id":"a"}')]),
        Call("claim", broker.claim_call(1, LEASE, "w").keys, ["not-a-number"], lambda r: r),  # Lua error
        broker.claim_call(1, LEASE, "w"),
    ]
    results = await broker._send(calls)
    assert results[0] == [1]
    assert isinstance(results[1], ResponseError)
    assert [c.id for c in calls[2].parse(results[2])] == ["a"]
    assert (await broker.queue_stats()).in_flight == 1  # the next round trip reads its own reply


async def test_scripts_redis_forgot_are_loaded_again_and_only_those_calls_re_sent(broker: Broker, redis: Redis) -> None:
    await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}')])
    await redis.script_flush()
    enq, claim = await broker.run_many(
        [broker.enqueue_call([EnqueueItem("b", "low", b'{"id":"b"}')]), broker.claim_call(2, LEASE, "w")]
    )
    assert enq == [True]
    assert [c.id for c in claim] == ["a", "b"]


async def test_a_connection_the_server_dropped_is_replaced_and_the_calls_sent_again(
    redis: Redis, redis_server: RedisServer, keys: QueueKeys
) -> None:
    client = make_client(jobqueue.build_config({"redis": {"url": redis_server.url}}).redis)  # redis.max_retries 3
    broker = Broker(client, keys)
    try:
        await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}')])
        conn_id = await client.client_id()  # the pool's one idle connection, which the broker uses next
        assert await redis.client_kill_filter(_id=conn_id) == 1
        assert await broker.enqueue([EnqueueItem("b", "low", b'{"id":"b"}')]) == [True]
        assert (await broker.queue_stats()).pending == 2
    finally:
        await client.aclose()


async def test_lone_enqueues_hold_one_connection_and_aclose_gives_it_back(redis_server: RedisServer) -> None:
    """The group commit sends one call at a time, on a connection it keeps (no pool checkout per send)."""
    cfg = jobqueue.build_config({"redis": {"url": redis_server.url}})
    client = make_client(cfg.redis)
    pool = client.connection_pool
    checkouts: list[object] = []
    releases: list[object] = []
    get, release = pool.get_connection, pool.release

    async def counting_get(*args: object, **kwargs: object) -> object:
        conn = await get(*args, **kwargs)
        checkouts.append(conn)
        return conn

    async def counting_release(conn: object) -> None:
        releases.append(conn)
        await release(conn)  # type: ignore[arg-type]

    pool.get_connection = counting_get  # type: ignore[method-assign]
    pool.release = counting_release  # type: ignore[method-assign]
    q = jobqueue.Queue(cfg, redis=client)
    try:
        for i in range(5):
            await q.enqueue("", i)
        assert len(checkouts) == 1
        assert releases == []
        await q.aclose()
        assert releases == checkouts  # back in the pool: the caller's client goes on working
        assert (await q.stats()).pending == 5
    finally:
        await client.aclose()


async def test_a_held_enqueue_connection_the_server_dropped_is_replaced(
    redis: Redis, redis_server: RedisServer
) -> None:
    q = jobqueue.Queue(jobqueue.build_config({"redis": {"url": redis_server.url}}))  # redis.max_retries 3
    try:
        await q.enqueue("", 1)
        assert await redis.client_kill_filter(_type="normal", skipme=True) >= 1  # the held one among them
        await q.enqueue("", 2)
        await asyncio.gather(*(q.enqueue("", i) for i in range(3, 10)))  # group commit on the new connection
        assert (await q.stats()).pending == 9
    finally:
        await q.aclose()
