"""TLS and ACL against a real redis-server: the right CA and user work end to end; a wrong
password or an untrusted certificate fails at start-up with one clear sentence, and /readyz
says why."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError
from tls_redis import TLSRedis

from jobqueue import HandlerRegistry, Job, Queue, Worker, build_config
from jobqueue.config import Config
from jobqueue.errors import RedisUnavailable
from jobqueue.health import Health, HttpServer
from jobqueue.metrics import Metrics
from jobqueue.redis_conn import check, make_client


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    server = TLSRedis(tmp_path_factory.mktemp("tls-redis")).start()
    yield server
    server.stop()


def redis_section(s: TLSRedis, form: str, *, password: str | None = None, ca: Path | None = None) -> dict[str, Any]:
    pw = s.password if password is None else password
    ca_file = str(ca or s.ca.cert)
    if form == "url":
        return {"url": f"rediss://{s.user}:{pw}@127.0.0.1:{s.port}/0", "tls": {"ca_file": ca_file}}
    return {"addr": s.addr, "username": s.user, "password": pw, "tls": {"enabled": True, "ca_file": ca_file}}


def config(redis: dict[str, Any], queue: str = "secure", **more: Any) -> Config:
    return build_config(
        {
            "queue_name": queue,
            "redis": {"dial_timeout": "2s", "max_retries": 1, **redis},
            "worker": {"count": 2, "heartbeat_ttl": "2s", "handler": "jobqueue.handlers:noop"},
            "observability": {"metrics_port": 0},
            **more,
        }
    )


async def eventually(check_fn: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check_fn():
        assert time.monotonic() < deadline, "condition not met within the deadline"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("form", ["url", "fields"])
async def test_the_ca_and_the_acl_user_carry_jobs_end_to_end_over_tls(tls_redis: TLSRedis, form: str) -> None:
    cfg = config(redis_section(tls_redis, form), queue=f"secure-{form}")
    seen: list[str] = []
    registry = HandlerRegistry()

    async def record(job: Job) -> None:
        seen.append(job.id)

    registry.register("record", record)
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(cfg, registry=registry).run(stop))
    async with Queue(cfg) as queue:
        ids = [await queue.enqueue("record", {"i": i}, priority="high" if i % 2 else "low") for i in range(6)]
        ids.append(await queue.enqueue("record", delay=0.2))

        async def all_acked() -> bool:
            return (await queue.stats()).counters.get("completed") == len(ids)

        await eventually(all_acked)
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert sorted(seen) == sorted(ids)


async def test_the_acl_user_reaches_only_jobqueue_keys(tls_redis: TLSRedis) -> None:
    cfg = config(redis_section(tls_redis, "url"))
    client = make_client(cfg.redis)
    try:
        await client.set("jobqueue:{secure}:probe", "1")
        with pytest.raises(NoPermissionError):
            await client.set("someone-else:key", "1")
        with pytest.raises(NoPermissionError):
            await client.flushall()
        with pytest.raises(NoPermissionError):
            await client.config_get("requirepass")
    finally:
        await client.delete("jobqueue:{secure}:probe")
        await client.aclose()


async def test_without_credentials_nothing_is_answered(tls_redis: TLSRedis) -> None:
    client = Redis(host="127.0.0.1", port=tls_redis.port, ssl=True, ssl_ca_certs=str(tls_redis.ca.cert))
    try:
        with pytest.raises(Exception, match=r"(?i)auth"):
            await client.get("jobqueue:{secure}:anything")
    finally:
        await client.aclose()


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("wrong password", {"password": "not-the-password"}, "refused the credentials"),
    ("untrusted certificate", {"rogue": True}, "certificate verify failed"),
]
READYZ = {"wrong password": "invalid username-password pair", "untrusted certificate": "certificate verify failed"}


def bad_section(s: TLSRedis, case: dict[str, Any], form: str = "fields") -> dict[str, Any]:
    return redis_section(s, form, password=case.get("password"), ca=s.rogue_ca.cert if case.get("rogue") else None)


@pytest.mark.parametrize(("case", "bad", "message"), BAD, ids=[b[0] for b in BAD])
async def test_check_turns_a_bad_connection_into_one_clear_sentence(
    tls_redis: TLSRedis, case: str, bad: dict[str, Any], message: str
) -> None:
    cfg = config(bad_section(tls_redis, bad))
    client = make_client(cfg.redis)
    try:
        with pytest.raises(RedisUnavailable, match=message) as info:
            await check(client, cfg.redis)
    finally:
        await client.aclose()
    text = str(info.value)
    assert "\n" not in text and f"127.0.0.1:{tls_redis.port}" in text


@pytest.mark.slow
@pytest.mark.parametrize(("case", "bad", "message"), BAD, ids=[b[0] for b in BAD])
def test_the_worker_fails_at_start_up_with_a_clear_error(
    tls_redis: TLSRedis, tmp_path: Path, case: str, bad: dict[str, Any], message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(bad_section(tls_redis, bad, "url")).model_dump(mode="json")))
    r = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={path}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1, r
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.mark.parametrize(("case", "bad", "message"), BAD, ids=[b[0] for b in BAD])
async def test_readyz_says_why_redis_is_not_usable(
    tls_redis: TLSRedis, http: aiohttp.ClientSession, case: str, bad: dict[str, Any], message: str
) -> None:
    cfg = config(bad_section(tls_redis, bad))
    client = make_client(cfg.redis)
    server = HttpServer("127.0.0.1", free_port(), Metrics().registry, Health(client.ping))
    await server.start()
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/readyz") as resp:
            body = await resp.text()
            assert resp.status == 503, body
        prefix = "redis refused the credentials:" if case == "wrong password" else "redis unreachable:"
        assert body.startswith(prefix) and READYZ[case] in body, body
        assert "not-the-password" not in body
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
            assert resp.status == 200  # alive, just not ready
    finally:
        await server.stop()
        await client.aclose()


async def test_readyz_is_ready_with_the_right_ca_and_user(tls_redis: TLSRedis, http: aiohttp.ClientSession) -> None:
    cfg = config(redis_section(tls_redis, "fields"))
    client = make_client(cfg.redis)
    server = HttpServer("127.0.0.1", free_port(), Metrics().registry, Health(client.ping))
    await server.start()
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/readyz") as resp:
            assert resp.status == 200, await resp.text()
    finally:
        await server.stop()
        await client.aclose()


async def test_connecting_without_credentials_says_that_credentials_are_missing(tls_redis: TLSRedis) -> None:
    cfg = config({"addr": tls_redis.addr, "tls": {"enabled": True, "ca_file": str(tls_redis.ca.cert)}})
    client = make_client(cfg.redis)
    try:
        with pytest.raises(RedisUnavailable, match="requires authentication and no credentials were given"):
            await check(client, cfg.redis)
    finally:
        await client.aclose()


async def test_plain_redis_against_a_tls_only_port_hints_at_tls(tls_redis: TLSRedis) -> None:
    cfg = config({"addr": tls_redis.addr, "username": tls_redis.user, "password": tls_redis.password})
    client = make_client(cfg.redis)
    try:
        with pytest.raises(RedisUnavailable) as info:
            await check(client, cfg.redis)
    finally:
        await client.aclose()
    assert tls_redis.password not in str(info.value)
    assert "rediss://" in str(info.value) or "TLS" in str(info.value), str(info.value)
