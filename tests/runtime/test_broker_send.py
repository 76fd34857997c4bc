"""Broker's own pipelining (one write, then the replies): script errors stay in their place,
scripts Redis forgot are reloaded, a dropped connection is retried with the client's policy."""

from __future__ import annotations

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
