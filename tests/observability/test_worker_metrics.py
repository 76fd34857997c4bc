"""A real all-in-one process (producer + worker + reaper) runs a known sequence of jobs; its
/metrics must count every one of them exactly, and its stderr must be JSON lines with the fields."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis
from redis_server import RedisServer, free_port
from support_obs import eventually, get, parse

from jobqueue.api import Queue
from jobqueue.broker import Broker
from jobqueue.config import build_config
from jobqueue.keys import QueueKeys

HERE = Path(__file__).parent
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_config(tmp: Path, server: RedisServer, port: int, queue: str, scan: Path) -> Path:
    cfg = {
        "queue_name": queue,
        "redis": {"url": server.url},
        "worker": {
            "count": 4,
            "max_retries": 2,
            "heartbeat_ttl": "3s",
            "backoff": {"base": "10ms", "max": "20ms", "jitter": 0},
            "handler": "obs_handlers:default",
            "handler_modules": ["obs_handlers"],
            "reaper_interval": "100ms",
        },
        "producer": {"scan_dir": str(scan), "rate_limit_per_sec": 0},
        "observability": {
            "metrics_port": port,
            "metrics_host": "127.0.0.1",
            "log_format": "json",
            "queue_sample_interval": "0s",
        },
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
async def seeded(redis: Redis, redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Path]:
    """The queue's state before the process starts: one abandoned lease, jobs of every outcome."""
    queue = "obs"
    config = build_config({"queue_name": queue, "redis": {"url": redis_server.url}, "worker": {"max_retries": 2}})
    keys = QueueKeys(queue, ("high", "low"))
    async with Queue(config, redis=redis) as q:
        # A job claimed by a worker that died: its lease has already expired, the reaper must recover it.
        await q.enqueue("ok", job_id="ghost", priority="low")
        assert [c.id for c in await Broker(redis, keys).claim(1, 1, "ghost-worker")] == ["ghost"]
        for i in range(3):
            await q.enqueue("ok", job_id=f"ok-{i}", priority="high")
        await q.enqueue("flaky", job_id="flaky", priority="low", trace_context={"traceparent": TRACEPARENT})
        await q.enqueue("broken", job_id="broken", priority="low", max_retries=1)
        await q.enqueue("poison", job_id="poison", priority="high")
    await redis.lpush(keys.pending("low"), b"this is not a job")  # a foreign entry: malformed
    scan = tmp_path / "data"
    scan.mkdir()
    (scan / "report.pdf").write_bytes(b"x" * 10)  # high priority by extension
    (scan / "notes.txt").write_bytes(b"y" * 10)  # default priority: low
    yield scan


@pytest.fixture
def process(seeded: Path, redis_server: RedisServer, tmp_path: Path) -> Iterator[Proc]:
    port = free_port()
    config = write_config(tmp_path, redis_server, port, "obs", seeded)
    log = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "--role=all", f"--config={config}"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    p = Proc(proc, port, log)
    try:
        yield p
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


EXPECTED = {
    # high: ok x3, report.pdf, poison (permanent error)
    # low: flaky (fails once), broken (fails twice, dead), ghost (reaped, then done), notes.txt, malformed entry
    ("jobs_produced_total", "high"): 1,
    ("jobs_produced_total", "low"): 1,
    ("jobs_consumed_total", "high"): 5,
    ("jobs_consumed_total", "low"): 7,
    ("jobs_completed_total", "high"): 4,
    ("jobs_completed_total", "low"): 3,
    ("jobs_failed_total", "high"): 1,
    ("jobs_failed_total", "low"): 4,
    ("jobs_retried_total", "high"): 0,
    ("jobs_retried_total", "low"): 2,
    ("jobs_dead_letter_total", "high"): 1,
    ("jobs_dead_letter_total", "low"): 2,
    ("jobs_lease_lost_total", "high"): 0,
    ("jobs_lease_lost_total", "low"): 0,
    ("job_processing_duration_seconds_count", "high"): 5,
    ("job_processing_duration_seconds_count", "low"): 6,
    ("job_queue_wait_seconds_count", "high"): 5,
    ("job_queue_wait_seconds_count", "low"): 7,
    ("queue_length", "high"): 0,
    ("queue_length", "low"): 0,
    ("queue_oldest_job_age_seconds", "high"): 0,
    ("queue_oldest_job_age_seconds", "low"): 0,
}
UNLABELLED = {
    "jobs_reaped_total": 1,
    "circuit_breaker_trips_total": 0,
    "circuit_breaker_state": 0,
    "worker_active": 0,
    "jobs_in_flight": 0,
    "jobs_scheduled": 0,
    "jobs_scheduled_due": 0,
    "dead_letter_length": 3,
    "workers_live": 1,
    "queue_stats_up": 1,
    "jobqueue_ready": 1,
}


async def test_metrics_of_a_real_process_count_every_outcome_exactly(process: Proc) -> None:
    async def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        status, text = await get(process.base + "/metrics")
        samples = parse(text)
        done = sum(v for (name, _), v in samples.items() if name in ("jobs_completed_total", "jobs_dead_letter_total"))
        return samples if status == 200 and done >= 10 and samples.get(("worker_active", ())) == 0 else None

    samples = await eventually(settled, "10 jobs completed or dead-lettered", timeout_s=20)
    got = {(name, q): samples.get((name, (("queue", q),))) for name, q in EXPECTED}
    assert got == EXPECTED
    assert {name: samples.get((name, ())) for name in UNLABELLED} == UNLABELLED
    errors = {labels: v for (name, labels), v in samples.items() if name == "redis_errors_total"}
    assert errors and set(errors.values()) == {0.0}
    assert samples[("process_resident_memory_bytes", ())] > 0

    process.proc.send_signal(signal.SIGTERM)
    assert process.proc.wait(10) == 0

    lines = process.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "message", "role"} <= r.keys() and r["role"] == "all" for r in records)
    worker_ids = {r.get("worker_id") for r in records if r["message"] == "worker started"}
    assert len(worker_ids) == 1 and None not in worker_ids
    events = {(r["job_id"], r["message"]): r for r in records if "job_id" in r}
    retry = events[("flaky", "job failed, will retry")]
    assert retry["queue"] == "low" and retry["attempt"] == 1 and retry["worker_id"] in worker_ids
    assert retry["trace_id"] == TRACEPARENT.split("-")[1]
    assert retry["duration_s"] >= 0 and retry["level"] == "info"
    dead = events[("broken", "job dead-lettered")]
    assert dead["attempt"] == 2 and dead["reason"] == "max retries exceeded" and dead["level"] == "warning"
    assert events[("poison", "job dead-lettered")]["reason"] == "permanent error"


async def test_http_endpoints_start_with_the_process_and_a_busy_port_is_a_clear_error(
    process: Proc, redis_server: RedisServer, tmp_path: Path
) -> None:
    await eventually(lambda: _status(process.base + "/healthz"), "healthz 200")
    assert await get(process.base + "/readyz") == (200, "ready\n")
    other = tmp_path / "other"
    other.mkdir()
    config = write_config(other, redis_server, process.port, "obs", other)
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobqueue.cli",
        "--role=worker",
        f"--config={config}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    async with asyncio.timeout(30):
        _, stderr = await run.communicate()
    assert run.returncode == 1
    message = [json.loads(line)["message"] for line in stderr.decode().splitlines()]
    assert any(f"cannot serve metrics/health on 127.0.0.1:{process.port}" in m for m in message), message


async def _status(url: str) -> bool:
    status, _ = await get(url)
    return status == 200
