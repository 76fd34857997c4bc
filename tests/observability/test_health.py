"""/healthz and /readyz: liveness follows the role tasks, readiness follows Redis and draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis_server import RedisServer, free_port
from support_obs import eventually, get

from jobqueue.config import build_config
from jobqueue.health import Health, HttpServer
from jobqueue.metrics import Metrics
from jobqueue.roles.supervisor import Supervisor


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone: it is killed and restarted."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
async def supervisor(own_redis: RedisServer) -> AsyncIterator[tuple[Supervisor, str]]:
    port = free_port()
    cfg = build_config(
        {
            "queue_name": "health",
            "redis": {"url": own_redis.url, "dial_timeout": "200ms", "max_retries": 0},
            "worker": {"count": 2},
            "observability": {"metrics_port": port, "metrics_host": "127.0.0.1"},
        }
    )
    sup = Supervisor(cfg, "worker")
    task = asyncio.create_task(sup.run())
    base = f"http://127.0.0.1:{port}"
    try:
        yield sup, base
    finally:
        sup.stop.set()
        async with asyncio.timeout(15):
            assert await task == 0


async def _answer(url: str, status: int, text: str = "") -> bool:
    got, body = await get(url)
    return got == status and text in body


async def test_readiness_turns_503_while_redis_is_gone_and_200_when_it_is_back(
    supervisor: tuple[Supervisor, str], own_redis: RedisServer
) -> None:
    _, base = supervisor
    await eventually(lambda: _answer(base + "/readyz", 200, "ready"), "ready")
    own_redis.kill()
    await eventually(lambda: _answer(base + "/readyz", 503, "redis unreachable"), "readyz 503 without redis")
    assert await get(base + "/healthz") == (200, "ok\n")  # alive: restarting the pod would not help
    _, metrics = await get(base + "/metrics")
    assert "jobqueue_ready 0.0" in metrics and "queue_stats_up 0.0" in metrics
    own_redis.start()
    await eventually(lambda: _answer(base + "/readyz", 200, "ready"), "readyz 200 with redis back", timeout_s=15)
    _, metrics = await get(base + "/metrics")
    assert "jobqueue_ready 1.0" in metrics and "queue_stats_up 1.0" in metrics


async def test_readiness_fails_first_when_draining(supervisor: tuple[Supervisor, str]) -> None:
    sup, base = supervisor
    await eventually(lambda: _answer(base + "/readyz", 200), "ready")
    sup.health.draining = True  # what the first SIGTERM does before anything else
    assert await get(base + "/readyz") == (503, "draining: shutting down\n")
    assert await get(base + "/healthz") == (200, "ok\n")


async def _fine() -> None:
    return None


async def test_liveness_reports_a_dead_role_task_with_its_reason() -> None:
    async def crash() -> None:
        raise RuntimeError("handler import exploded")

    async def forever() -> None:
        await asyncio.Event().wait()

    health = Health(_fine)
    server = HttpServer("127.0.0.1", 0, Metrics().registry, health)
    await server.start()
    base = f"http://127.0.0.1:{server.bound_port}"
    alive = asyncio.create_task(forever())
    try:
        health.watch("reaper", alive, forever=True)
        assert await get(base + "/healthz") == (200, "ok\n")
        dead = asyncio.create_task(crash())
        health.watch("worker", dead, forever=True)
        await asyncio.wait([dead])
        status, body = await get(base + "/healthz")
        assert status == 500 and "role task worker died: RuntimeError('handler import exploded')" in body
        assert (await get(base + "/readyz"))[0] == 503
    finally:
        alive.cancel()
        await server.stop()


async def test_a_forever_role_that_returns_early_is_not_alive() -> None:
    health = Health(_fine)
    done = asyncio.create_task(_fine())
    await done
    health.watch("producer", done)  # a one-shot role may finish
    assert health.dead_reason() is None
    health.watch("worker", done, forever=True)
    assert health.dead_reason() == "role task worker exited unexpectedly"
    health.draining = True
    assert health.dead_reason() is None
