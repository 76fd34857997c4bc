"""Every admin command through the real CLI against a private Redis: results, refusals, --output
json/table, and the exit status (0 done, 1 failed, 2 bad usage)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from redis_server import RedisServer, free_port

from jobqueue.api import Queue
from jobqueue.broker import Broker
from jobqueue.cli import main
from jobqueue.clock import FakeClock
from jobqueue.config import build_config
from jobqueue.keys import QueueKeys

QUEUE = "adm"
KEYS = QueueKeys(QUEUE, ("high", "low"))
CLI = Callable[..., Awaitable[tuple[int, Any, str]]]


@pytest.fixture
def config_data(redis_server: RedisServer) -> dict[str, Any]:
    return {
        "queue_name": QUEUE,
        "redis": {"url": redis_server.url},
        "worker": {"count": 8, "max_retries": 2, "handler": "jobqueue.handlers:noop"},
        "observability": {"metrics_port": 0},
    }


@pytest.fixture
def cli(tmp_path: Path, config_data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> CLI:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_data))

    async def run(*args: str, output: str | None = "json") -> tuple[int, Any, str]:
        argv = ["--role=admin", f"--config={path}", *args] + ([f"--output={output}"] if output else [])
        capsys.readouterr()
        code = await asyncio.to_thread(main, argv)
        out, err = capsys.readouterr()
        parsed: Any = json.loads(out) if output == "json" and code in (0, 1) and out.strip() else out
        return code, parsed, err

    return run


@pytest.fixture
async def queue(redis: Redis, config_data: dict[str, Any]) -> AsyncIterator[Queue]:
    async with Queue(build_config(config_data), redis=redis) as q:
        yield q


async def bury(broker: Broker, job_id: str, reason: str = "permanent error") -> None:
    """Drive one job to the dead-letter queue the way a worker does (claim, then bury)."""
    claimed = await broker.claim(1, 30_000, "w-test")
    assert [c.id for c in claimed] == [job_id]
    assert await broker.bury([(job_id, claimed[0].token, reason, "boom", True)]) == [True]


async def test_stats_reports_every_figure_as_json_and_as_a_table(cli: CLI, queue: Queue) -> None:
    b = queue.broker
    await queue.enqueue("t", job_id="done", priority="high")
    (c,) = await b.claim(1, 30_000, "w1")
    await b.ack([(c.id, c.token, 5)])
    await queue.enqueue("t", job_id="dead", priority="low")
    await bury(b, "dead")
    await queue.enqueue("t", job_id="running", priority="high")
    await b.claim(1, 30_000, "w1")
    await b.register_worker("w1", 30_000, {"host": "h", "pid": 1, "started_ms": 1, "concurrency": 4})
    await queue.enqueue_many([*(_spec(f"h{i}", "high") for i in range(2)), _spec("l0", "low")])
    await queue.enqueue("t", job_id="later", delay=3600)

    code, r, _ = await cli("--admin-cmd=stats")
    assert code == 0
    assert r["priorities"]["high"]["pending"] == 2 and r["priorities"]["low"]["pending"] == 1
    assert r["priorities"]["high"]["oldest_age_s"] >= 0
    assert (r["in_flight"], r["scheduled"], r["dead_letter"], r["live_workers"]) == (1, 1, 1, 1)
    assert r["counters"]["completed"] == 1 and r["completed_kept"] == 1

    code, text, _ = await cli("--admin-cmd=stats", output="table")
    assert code == 0
    lines = text.splitlines()
    assert lines[2].split() == ["PRIORITY", "PENDING", "OLDEST"] and lines[3].split()[:2] == ["high", "2"]
    assert any(line.split()[:3] == ["dead", "letter", "1"] for line in lines)


def _spec(job_id: str, priority: str) -> Any:
    from jobqueue.api import JobSpec

    return JobSpec(type="t", job_id=job_id, priority=priority)


async def test_peek_lists_the_next_jobs_of_a_queue_or_an_alias(cli: CLI, queue: Queue) -> None:
    await queue.enqueue_many([_spec(f"j{i}", "low") for i in range(3)])
    await queue.enqueue("t", job_id="d1", priority="high")
    await bury(queue.broker, "d1")
    code, jobs, _ = await cli("--admin-cmd=peek", "--queue=low", "--n=2")
    assert code == 0 and [j["id"] for j in jobs] == ["j0", "j1"] and jobs[0]["state"] == "pending"
    assert jobs[0]["job"]["type"] == "t" and jobs[0]["attempts"] == 0
    code, jobs, _ = await cli("--admin-cmd=peek", "--queue=dlq")
    assert code == 0 and [(j["id"], j["reason"], j["error"]) for j in jobs] == [("d1", "permanent error", "boom")]
    code, text, _ = await cli("--admin-cmd=peek", "--queue=low", output="table")
    assert text.splitlines()[0].split()[:3] == ["ID", "PRIORITY", "STATE"] and len(text.splitlines()) == 4

    assert (await cli("--admin-cmd=peek", "--queue=nope"))[0] == 2
    assert (await cli("--admin-cmd=peek"))[0] == 2
    assert (await cli("--admin-cmd=peek", "--queue=low", "--n=0"))[0] == 2


async def test_purge_dlq_refuses_without_yes_and_says_how_many(cli: CLI, queue: Queue, redis: Redis) -> None:
    for i in range(3):
        await queue.enqueue("t", job_id=f"d{i}")
        await bury(queue.broker, f"d{i}")
    code, _, err = await cli("--admin-cmd=purge-dlq")
    assert code == 2 and "--yes" in err and await redis.zcard(KEYS.dead) == 3
    code, r, _ = await cli("--admin-cmd=purge-dlq", "--id=d0", "--yes")
    assert code == 0 and r == {"purged": 1}
    assert (await cli("--admin-cmd=purge-dlq", "--id=d0", "--yes"))[0] == 1
    code, text, _ = await cli("--admin-cmd=purge-dlq", "--yes", output="table")
    assert code == 0 and text.strip() == "purged 2 dead-letter job(s)"
    assert await redis.zcard(KEYS.dead) == 0 and not await redis.exists(KEYS.job("d1"))


async def test_requeue_dlq_moves_dead_jobs_back_with_attempts_reset(cli: CLI, queue: Queue, redis: Redis) -> None:
    for i in range(4):
        await queue.enqueue("t", job_id=f"d{i}", priority="high" if i == 0 else "low")
        await bury(queue.broker, f"d{i}")
    assert (await cli("--admin-cmd=requeue-dlq", "--id=d0"))[0] == 2
    assert (await cli("--admin-cmd=requeue-dlq", "--id=d0", "--n=1", "--yes"))[0] == 2
    assert await redis.zcard(KEYS.dead) == 4

    code, r, _ = await cli("--admin-cmd=requeue-dlq", "--id=d0", "--yes")
    assert code == 0 and r == {"requeued": 1, "ids": ["d0"]}
    record = await queue.broker.get_job("d0")
    assert record is not None and (record["state"], record["attempts"]) == ("pending", "0")
    assert await queue.broker.peek_ids("high", 10) == ["d0"]
    assert (await cli("--admin-cmd=requeue-dlq", "--id=d0", "--yes"))[0] == 1  # no longer dead

    code, r, _ = await cli("--admin-cmd=requeue-dlq", "--n=1", "--yes")
    assert code == 0 and r["requeued"] == 1
    code, r, _ = await cli("--admin-cmd=requeue-dlq", "--yes")
    assert code == 0 and r["requeued"] == 2 and await redis.zcard(KEYS.dead) == 0
    assert sorted(await queue.broker.peek_ids("low", 10)) == ["d1", "d2", "d3"]


async def test_inspect_shows_one_jobs_record_in_every_state(cli: CLI, queue: Queue) -> None:
    await queue.enqueue("t", {"x": 1}, job_id="a", priority="high")
    await queue.broker.claim(1, 30_000, "w9")
    code, r, _ = await cli("--admin-cmd=inspect", "--id=a")
    assert code == 0 and r["state"] == "active" and r["worker"] == "w9" and r["job"]["payload"] == {"x": 1}
    assert r["lease_deadline_ms"] > r["started_ms"] and "token" not in r and "data" not in r
    await queue.enqueue("t", job_id="s", delay=60)
    code, r, _ = await cli("--admin-cmd=inspect", "--id=s")
    assert r["state"] == "scheduled" and r["due_ms"] > 0
    code, text, _ = await cli("--admin-cmd=inspect", "--id=s", output="table")
    assert code == 0 and "state" in text and '"type": "t"' in text

    await queue.enqueue("t", job_id="c", priority="high")
    (claimed,) = await queue.broker.claim(1, 30_000, "w9")
    await queue.broker.ack([(claimed.id, claimed.token, 7)])
    code, r, _ = await cli("--admin-cmd=inspect", "--id=c")
    assert code == 0 and r["state"] == "completed" and r["duration_ms"] == 7

    code, _, err = await cli("--admin-cmd=inspect", "--id=ghost")
    assert code == 1 and "no job with id 'ghost'" in err
    assert (await cli("--admin-cmd=inspect"))[0] == 2


async def test_workers_lists_live_workers_and_what_each_runs(cli: CLI, queue: Queue) -> None:
    b = queue.broker
    await b.register_worker("w1", 30_000, {"host": "node-a", "pid": 42, "started_ms": 1000, "concurrency": 4})
    past = Broker(queue.redis, KEYS, FakeClock(1_000_000))  # registered long ago, never renewed
    await past.register_worker("gone", 30_000, {"host": "node-b", "pid": 7, "started_ms": 1000, "concurrency": 4})
    await queue.enqueue_many([_spec("r1", "high"), _spec("r2", "low")])
    await b.claim(2, 30_000, "w1")
    code, r, _ = await cli("--admin-cmd=workers")
    assert code == 0 and [w["id"] for w in r] == ["w1"]
    (w,) = r
    assert (w["host"], w["pid"], w["concurrency"]) == ("node-a", 42, 4)
    assert sorted((j["id"], j["queue"], j["attempt"]) for j in w["running"]) == [("r1", "high", 1), ("r2", "low", 1)]
    code, text, _ = await cli("--admin-cmd=workers", output="table")
    assert code == 0 and "node-a" in text and "2/4" in text


async def test_enqueue_submits_a_job_from_the_shell(cli: CLI, queue: Queue) -> None:
    code, r, _ = await cli("--admin-cmd=enqueue", "--queue=high", '--payload={"n": 3}', "--type=t", "--id=e1")
    assert code == 0 and r["id"] == "e1" and r["created"] is True and r["queue"] == "high"
    record = await queue.broker.get_job("e1")
    assert record is not None and json.loads(record["data"])["payload"] == {"n": 3}
    code, r, _ = await cli("--admin-cmd=enqueue", "--queue=high", "--id=e1")
    assert code == 0 and r["created"] is False
    code, r, _ = await cli("--admin-cmd=enqueue", "--delay=10s", "--payload=1")
    assert code == 0 and r["delay_s"] == 10 and r["due_ms"] > 0
    assert (await queue.broker.queue_stats()).scheduled == 1
    code, text, _ = await cli("--admin-cmd=enqueue", "--id=e2", output="table")
    assert code == 0 and text.strip() == "enqueued e2 on low"
    code, _, err = await cli("--admin-cmd=enqueue", "--payload={nope")
    assert code == 2 and "not valid JSON" in err
    assert (await cli("--admin-cmd=enqueue", "--queue=urgent"))[0] == 2
    assert (await cli("--admin-cmd=enqueue", "--delay=soon"))[0] == 2


async def test_bench_reports_throughput_and_latency_of_jobs_run_by_a_real_worker(
    cli: CLI, config_data: dict[str, Any], redis: Redis
) -> None:
    from jobqueue.roles.worker import Worker

    stop = asyncio.Event()
    worker = Worker(build_config(config_data), redis=redis)
    task = asyncio.create_task(worker.run(stop))
    try:
        code, r, _ = await cli("--admin-cmd=bench", "--bench-count=300", "--bench-rate=3000", "--bench-timeout=20s")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert code == 0 and r["ok"] is True and r["completed"] == r["jobs"] == 300 and r["latency_samples"] == 300
    assert 0 <= r["latency_p50_s"] <= r["latency_p95_s"] <= r["latency_p99_s"] <= r["latency_max_s"] < 20
    assert r["throughput_per_s"] > 0 and r["priority"] == "low"


async def test_bench_without_workers_times_out_with_exit_status_1(cli: CLI, redis: Redis) -> None:
    code, r, _ = await cli("--admin-cmd=bench", "--bench-count=5", "--bench-timeout=200ms", "--bench-priority=high")
    assert code == 1 and r["ok"] is False and r["unfinished"] == 5 and r["latency_p50_s"] is None
    assert (await cli("--admin-cmd=bench", "--bench-priority=urgent"))[0] == 2
    assert (await cli("--admin-cmd=bench", "--bench-count=0"))[0] == 2


async def test_bad_usage_exits_2_and_an_unreachable_redis_exits_1(
    cli: CLI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--role=admin", "--admin-cmd=explode"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--role=admin", f"--config={tmp_path / 'none.yaml'}"])
    assert exc.value.code == 2
    cfg = tmp_path / "down.yaml"
    cfg.write_text(yaml.safe_dump({"redis": {"addr": f"127.0.0.1:{free_port()}", "dial_timeout": "200ms"}}))
    assert await asyncio.to_thread(main, ["--role=admin", "--admin-cmd=stats", f"--config={cfg}"]) == 1
    assert "cannot reach Redis" in capsys.readouterr().err


async def test_admin_commands_start_no_http_server(
    tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:  # a worker would refuse to start on this port; admin never binds it
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = tmp_path / "busy.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {"redis": {"url": redis_server.url}, "observability": {"metrics_port": busy.getsockname()[1]}}
            )
        )
        argv = ["--role=admin", f"--config={cfg}", "--output=json", "--admin-cmd=stats"]
        assert await asyncio.to_thread(main, argv) == 0
        assert json.loads(capsys.readouterr().out)["queue"] == "default"


async def test_config_is_shown_with_secrets_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "secret.yaml"
    cfg.write_text(yaml.safe_dump({"redis": {"url": "redis://app:hunter2@r:6379/0", "password": "hunter2"}}))
    for output in ("json", "table"):
        assert (
            await asyncio.to_thread(
                main, ["--role=admin", f"--config={cfg}", f"--output={output}", "--admin-cmd=config"]
            )
            == 0
        )
        shown = capsys.readouterr().out
        assert "hunter2" not in shown and "redis://app:***@r:6379/0" in shown
