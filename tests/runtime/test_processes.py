"""Real worker processes: SIGKILL and SIGTERM mid-job, the all-in-one CLI, the producer role."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from polling import eventually
from redis.asyncio import Redis
from redis_server import RedisServer

import jobqueue
from jobqueue.broker import Broker
from jobqueue.keys import QueueKeys

SUPPORT = Path(__file__).resolve().parents[1] / "support"
pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, server: RedisServer, **overrides: Any) -> Path:
    data: dict[str, Any] = {
        "queue_name": "proc",
        "redis": {"url": server.url},
        "worker": {
            "count": 4,
            "heartbeat_ttl": "1s",
            "reaper_interval": "200ms",
            "handler_modules": ["jq_test_handlers"],
            "shutdown_timeout": "5s",
        },
        "observability": {"metrics_port": 0, "log_format": "json"},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(role: str, cfg: Path, server: RedisServer, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SUPPORT), "JQ_TEST_REDIS_URL": server.url}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", f"--role={role}", f"--config={cfg}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def broker_for(redis: Redis) -> Broker:
    return Broker(redis, QueueKeys("proc", ("high", "low")))


async def runs(redis: Redis, job_id: str) -> list[str]:
    return [x.decode() for x in await redis.lrange(f"test:runs:{job_id}", 0, -1)]


async def test_a_job_of_a_sigkilled_worker_is_reclaimed_and_completed(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    cfg = write_config(tmp_path, redis_server)
    broker = broker_for(redis)
    async with jobqueue.Queue(jobqueue.load_config(cfg, environ={})) as q:
        job_id = await q.enqueue("sleep", {"s": 1.5})
    a = start("worker", cfg, redis_server, tmp_path / "a.log")
    try:
        await eventually(lambda: _started(redis, job_id), timeout=20, what="job started in worker A")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()
        b = start("worker", cfg, redis_server, tmp_path / "b.log")
        try:
            await eventually(lambda: _completed(broker, 1), timeout=20, what="job completed by worker B")
            reclaim_s = time.monotonic() - killed_at
        finally:
            b.send_signal(signal.SIGTERM)
            assert b.wait(20) == 0
    finally:
        if a.poll() is None:
            a.kill()
    history = await runs(redis, job_id)
    assert history[0].startswith("start:1:") and history[-1].startswith("done:2:")  # lost attempt counted
    stats = await broker.queue_stats()
    assert (stats.pending, stats.in_flight, stats.dead, stats.counters.get("reaped")) == (0, 0, 0, 1)
    assert reclaim_s < 1 + 0.2 + 1.5 + 5  # ttl + reaper interval + the job itself + process start-up


async def _started(redis: Redis, job_id: str) -> bool:
    return any(r.startswith("start:") for r in await runs(redis, job_id))


async def _completed(broker: Broker, n: int) -> bool:
    return (await broker.queue_stats()).counters.get("completed", 0) >= n


async def test_sigterm_lets_the_running_job_finish_and_exits_0(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    cfg = write_config(tmp_path, redis_server)
    async with jobqueue.Queue(jobqueue.load_config(cfg, environ={})) as q:
        job_id = await q.enqueue("sleep", {"s": 0.5})
    w = start("worker", cfg, redis_server, tmp_path / "w.log")
    await eventually(lambda: _started(redis, job_id), timeout=20, what="job started")
    w.send_signal(signal.SIGTERM)
    assert w.wait(20) == 0
    assert (await runs(redis, job_id))[-1].startswith("done:1:")
    assert (await broker_for(redis).queue_stats()).counters.get("completed") == 1


async def test_sigterm_requeues_a_job_that_cannot_finish_in_time_at_once(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    cfg = write_config(tmp_path, redis_server, worker={"shutdown_timeout": "300ms"})
    broker = broker_for(redis)
    async with jobqueue.Queue(jobqueue.load_config(cfg, environ={})) as q:
        await q.enqueue("sleep", {"s": 0}, priority="high", job_id="other")
        job_id = await q.enqueue("sleep", {"s": 60}, priority="high")
    w = start("worker", cfg, redis_server, tmp_path / "w.log")
    await eventually(lambda: _started(redis, job_id), timeout=20, what="long job started")
    w.send_signal(signal.SIGTERM)
    assert w.wait(20) == 0
    record = await broker.get_job(job_id)
    assert record is not None and (record["state"], record["attempts"]) == ("pending", "0")  # not a failure
    assert await broker.peek_ids("high", 1) == [job_id]  # at the head, no reaper needed
    assert (await broker.queue_stats()).in_flight == 0


async def test_all_in_one_processes_a_scan_dir_to_completion_and_the_dlq(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(20):
        (data / f"doc{i}.txt").write_bytes(b"x" * 2048)
    (data / "report.pdf").write_bytes(b"%PDF")
    (data / "sub" / "will-fail.txt").write_bytes(b"x")
    (data / "fail-too.docx").write_bytes(b"x")
    (data / "skip.tmp").write_bytes(b"x")
    (data / "sub" / ".DS_Store").write_bytes(b"x")
    cfg = write_config(
        tmp_path,
        redis_server,
        producer={"scan_dir": str(data), "rate_limit_per_sec": 0},
        worker={"max_retries": 1, "backoff": {"base": "10ms", "max": "20ms"}},
    )
    broker = broker_for(redis)
    proc = start("all", cfg, redis_server, tmp_path / "all.log")
    try:
        await eventually(lambda: _settled(broker, 23), timeout=20, what="23 files completed or dead-lettered")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (tmp_path / "all.log").read_text()[-3000:]
    stats = await broker.queue_stats()
    assert stats.counters.get("completed") == 21 and stats.dead == 2
    dead = await broker.get_jobs(await broker.peek_ids("dead", 10))
    assert sorted(Path(_job(r)["filepath"]).name for r in dead) == ["fail-too.docx", "will-fail.txt"]
    assert all(r is not None and r["reason"] == "max retries exceeded" for r in dead)


def _job(record: dict[str, str] | None) -> dict[str, Any]:
    import json

    assert record is not None
    return json.loads(record["data"])  # type: ignore[no-any-return]


async def _settled(broker: Broker, n: int) -> bool:
    s = await broker.queue_stats()
    return s.counters.get("completed", 0) + s.dead >= n


async def test_the_producer_role_makes_one_pass_with_priorities_and_exits_0(
    tmp_path: Path, redis_server: RedisServer, redis: Redis
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.pdf", "b.txt", "c.ZIP", "d.tmp"):
        (data / name).write_bytes(b"1234")
    cfg = write_config(tmp_path, redis_server, producer={"scan_dir": str(data)})
    proc = start("producer", cfg, redis_server, tmp_path / "p.log")
    assert proc.wait(30) == 0
    s = await broker_for(redis).queue_stats()
    assert [(p.name, p.pending) for p in s.priorities] == [("high", 2), ("low", 1)]


async def test_rate_limited_producers_achieve_the_configured_rate_within_10_percent(
    redis_server: RedisServer, redis: Redis
) -> None:
    from jobqueue.roles.producer import RateLimiter

    cfg = jobqueue.build_config({"queue_name": "rl", "redis": {"url": redis_server.url}})
    async with jobqueue.Queue(cfg) as q:
        limiters = [RateLimiter(q, 100), RateLimiter(q, 100)]  # two producers share the window
        granted = 0
        t0 = time.monotonic()

        async def produce(limiter: RateLimiter) -> None:
            nonlocal granted
            while True:
                await limiter.acquire(1)
                if time.monotonic() - t0 >= 5.0:
                    return
                granted += 1

        await asyncio.gather(*(produce(lim) for lim in limiters))
    assert 450 <= granted <= 550, granted


def test_version_flag_prints_the_version() -> None:
    out = subprocess.run([sys.executable, "-m", "jobqueue.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"job-queue-system {jobqueue.__version__}"


@pytest.mark.parametrize(
    "args",
    [["--role=nope"], [], ["--role=admin"], ["--role=worker", "--bogus"], ["--role=admin", "--admin-cmd=purge-dlq"]],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path, redis_server: RedisServer) -> None:
    cfg = write_config(tmp_path, redis_server)
    out = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", f"--config={cfg}", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr


async def test_a_worker_started_before_redis_waits_for_it_instead_of_crash_looping(tmp_path: Path) -> None:
    late = RedisServer()  # port chosen, server not started yet
    try:
        cfg = write_config(tmp_path, late, worker={"heartbeat_ttl": "2s"})
        proc = start("worker", cfg, late, tmp_path / "w.log")
        try:
            deadline = time.monotonic() + 20
            while b"waiting for Redis" not in (tmp_path / "w.log").read_bytes():
                assert proc.poll() is None, (tmp_path / "w.log").read_text()
                assert time.monotonic() < deadline, "worker never reported waiting"
                await asyncio.sleep(0.05)
            late.start()
            client = Redis.from_url(late.url)
            try:
                await eventually(
                    lambda: _live_workers(client, 1), timeout=20, what="worker registered once Redis is up"
                )
            finally:
                await client.aclose()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
    finally:
        late.cleanup()


async def _live_workers(client: Redis, n: int) -> bool:
    return (await broker_for(client).queue_stats()).live_workers >= n
