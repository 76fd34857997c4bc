"""Shared fixtures: one private redis-server per test session, a clean database per test."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent / "support"))

from redis_server import RedisServer

from jobqueue.broker import Broker
from jobqueue.clock import FakeClock
from jobqueue.keys import QueueKeys


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer().start()
    except RuntimeError as err:
        pytest.fail(f"cannot start a private redis-server for the tests: {err}", pytrace=False)
    yield server
    server.cleanup()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=False)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> QueueKeys:
    return QueueKeys("test", ("high", "low"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(redis: Redis, keys: QueueKeys, clock: FakeClock) -> Broker:
    return Broker(redis, keys, clock)
