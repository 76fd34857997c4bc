"""The client's direct-write path (no wait_for per command) keeps redis-py's write timeout and
error behaviour: a Redis that stops reading makes a large write time out and drops the connection."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis_server import RedisServer

import jobqueue
from jobqueue.redis_conn import FastConnection, make_client


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def _cfg(server: RedisServer) -> jobqueue.Config:
    return jobqueue.build_config(
        {"redis": {"url": server.url, "read_timeout": "300ms", "write_timeout": "300ms", "max_retries": 0}}
    )


async def test_commands_go_through_the_direct_write_connection(own_server: RedisServer) -> None:
    client = make_client(_cfg(own_server).redis)
    try:
        assert await client.set("k", b"v" * 300_000)  # bigger than one socket write
        assert await client.get("k") == b"v" * 300_000
        conn = await client.connection_pool.get_connection()
        assert isinstance(conn, FastConnection)
        await client.connection_pool.release(conn)
    finally:
        await client.aclose()


async def test_a_write_that_redis_does_not_take_times_out_and_drops_the_connection(own_server: RedisServer) -> None:
    client = make_client(_cfg(own_server).redis)
    try:
        assert await client.ping()
        os.kill(own_server.proc.pid, signal.SIGSTOP)  # Redis stops reading: the socket buffers fill
        try:
            with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
                await client.set("big", b"x" * (64 << 20))
        finally:
            os.kill(own_server.proc.pid, signal.SIGCONT)
        assert await client.ping()  # a fresh connection; the half-written one was dropped
        assert await client.get("big") is None
    finally:
        await client.aclose()
