"""The worker in-process against a real Redis: priority, retries, DLQ, timeouts, leases, draining."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from polling import eventually
from redis_server import RedisServer

import jobqueue
from jobqueue import HandlerRegistry, Job, JobSpec, PermanentJobError, Queue, RetryJob, Worker
from jobqueue.roles.reaper import Reaper


def config(server: RedisServer, **worker: Any) -> jobqueue.Config:
    w = {"count": 4, "max_retries": 2, "backoff": {"base": "10ms", "max": "40ms"}, "heartbeat_ttl": "2s"}
    w.update(worker)
    return jobqueue.build_config(
        {
            "queue_name": "wt",
            "redis": {"url": server.url},
            "worker": w,
            "circuit_breaker": {"enabled": False},
            "observability": {"metrics_port": 0},
        }
    )


@asynccontextmanager
async def running(cfg: jobqueue.Config, registry: HandlerRegistry) -> AsyncIterator[Worker]:
    worker = Worker(cfg, registry=registry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_jobs_run_in_strict_priority_order(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server, count=1)
    order: list[str] = []
    reg = HandlerRegistry()

    async def rec(job: Job) -> None:
        order.append(job.payload)

    reg.register("rec", rec)
    async with Queue(cfg) as q:
        await q.enqueue_many([JobSpec("rec", f"low{i}", priority="low") for i in range(3)])
        await q.enqueue_many([JobSpec("rec", f"high{i}", priority="high") for i in range(3)])
        async with running(cfg, reg):
            await eventually(lambda: _true(len(order) == 6), what="6 jobs")
    assert order == ["high0", "high1", "high2", "low0", "low1", "low2"]


async def _true(v: bool) -> bool:
    return v


async def test_a_failing_job_retries_with_backoff_then_goes_to_the_dlq_with_its_error(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server, max_retries=2, backoff={"base": "50ms", "max": "50ms", "jitter": 0})
    times: list[float] = []
    reg = HandlerRegistry()

    def boom(job: Job) -> None:
        times.append(time.monotonic())
        raise ValueError(f"attempt {job.attempt} failed")

    reg.register("boom", boom)
    async with Queue(cfg) as q:
        job_id = await q.enqueue("boom", {"x": 1})
        async with running(cfg, reg) as w:
            await eventually(lambda: _dead(q, 1), what="job in DLQ")
            record = await w.broker.get_job(job_id)
        stats = await q.stats()
    assert len(times) == 3  # first run + max_retries
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))  # backoff was honoured
    assert record is not None
    assert record["state"] == "dead"
    assert record["reason"] == "max retries exceeded"
    assert record["error"] == "ValueError: attempt 3 failed"
    assert record["attempts"] == "3"
    assert stats.counters == {"retried": 2, "dead": 1}


async def _dead(q: Queue, n: int) -> bool:
    return (await q.stats()).dead >= n


async def test_a_malformed_payload_goes_to_the_dlq_with_the_reason_and_nothing_else_is_lost(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server)
    done: list[str] = []
    reg = HandlerRegistry()

    async def ok(job: Job) -> None:
        done.append(job.payload)

    reg.register("ok", ok)
    async with Queue(cfg) as q:
        await q.enqueue("ok", "before")
        await redis.lpush(q.keys.pending("low"), b"\xff\xfe not json", b'{"id": 5, "retries": "x"}')
        await q.enqueue("ok", "after")
        async with running(cfg, reg) as w:
            await eventually(lambda: _dead(q, 2), what="2 malformed jobs dead-lettered")
            await eventually(lambda: _true(len(done) == 2), what="good jobs done")
            dead = await w.broker.get_jobs(await w.broker.peek_ids("dead", 10))
    assert sorted(done) == ["after", "before"]
    assert all(r is not None and r["reason"] == "malformed payload" for r in dead)
    assert any(r is not None and "retries" in r["error"] for r in dead)


async def test_a_job_over_its_timeout_fails_and_retries(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server, max_retries=1)
    reg = HandlerRegistry()

    async def slow(job: Job) -> None:
        await asyncio.sleep(30)

    reg.register("slow", slow)
    async with Queue(cfg) as q:
        job_id = await q.enqueue("slow", None, timeout=0.05)
        async with running(cfg, reg) as w:
            await eventually(lambda: _dead(q, 1), what="timed-out job dead-lettered")
            record = await w.broker.get_job(job_id)
    assert record is not None and record["error"] == "timed out after 0.05s" and record["attempts"] == "2"


async def test_the_configured_job_timeout_stops_sync_and_async_handlers_and_a_handlers_own_timeout_is_its_error(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server, max_retries=0, job_timeout="50ms")
    reg = HandlerRegistry()
    release = threading.Event()

    async def slow(job: Job) -> None:
        await asyncio.sleep(30)

    def blocking(job: Job) -> None:
        release.wait(30)

    async def own(job: Job) -> None:
        raise TimeoutError("upstream API did not answer")

    reg.register("slow", slow)
    reg.register("blocking", blocking)
    reg.register("own", own)
    async with Queue(cfg) as q:
        ids = [await q.enqueue(t) for t in ("slow", "blocking", "own")]
        async with running(cfg, reg) as w:
            await eventually(lambda: _dead(q, 3), what="all three dead-lettered")
            records = await w.broker.get_jobs(ids)
            release.set()
    errors = [r["error"] if r else None for r in records]
    assert errors == ["timed out after 0.05s", "timed out after 0.05s", "TimeoutError: upstream API did not answer"]


async def test_a_short_per_job_timeout_fires_while_a_long_one_is_pending(redis_server: RedisServer, redis: Any) -> None:
    """One watchdog serves every job: a job starting with an earlier deadline must wake it."""
    cfg = config(redis_server, max_retries=0, job_timeout="60s", shutdown_timeout="100ms")
    reg = HandlerRegistry()
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    reg.register("slow", slow)
    async with Queue(cfg) as q:
        await q.enqueue("slow")
        async with running(cfg, reg) as w:
            await asyncio.wait_for(started.wait(), 10)
            short = await q.enqueue("slow", timeout=0.05)
            await eventually(lambda: _dead(q, 1), what="the short job timed out", timeout=5)
            record = await w.broker.get_job(short)
    assert record is not None and record["error"] == "timed out after 0.05s"


async def test_retry_job_and_permanent_error_are_honoured(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server, max_retries=5)
    calls: dict[str, int] = {"again": 0, "never": 0}
    reg = HandlerRegistry()

    async def again(job: Job) -> None:
        calls["again"] += 1
        if job.attempt < 3:
            raise RetryJob(delay=0.01)

    async def never(job: Job) -> None:
        calls["never"] += 1
        raise PermanentJobError("bad input")

    reg.register("again", again)
    reg.register("never", never)
    async with Queue(cfg) as q:
        await q.enqueue("again")
        never_id = await q.enqueue("never")
        async with running(cfg, reg) as w:
            await eventually(lambda: _completed(q, 1), what="retried job completes")
            await eventually(lambda: _dead(q, 1), what="permanent failure dead-lettered")
            record = await w.broker.get_job(never_id)
    assert calls == {"again": 3, "never": 1}
    assert record is not None and record["reason"] == "permanent error"
    assert record["error"] == "PermanentJobError: bad input"


async def _completed(q: Queue, n: int) -> bool:
    return (await q.stats()).counters.get("completed", 0) >= n


async def test_sync_handlers_run_in_a_thread_and_async_ones_on_the_loop(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server)
    seen: dict[str, str] = {}
    reg = HandlerRegistry()

    def sync(job: Job) -> None:
        seen["sync"] = threading.current_thread().name

    async def coro(job: Job) -> None:
        seen["async"] = threading.current_thread().name

    reg.register("sync", sync)
    reg.register("async", coro)
    async with Queue(cfg) as q:
        await q.enqueue("sync")
        await q.enqueue("async")
        async with running(cfg, reg):
            await eventually(lambda: _completed(q, 2), what="both done")
    assert seen["sync"].startswith("jobqueue-job")
    assert seen["async"] == threading.current_thread().name


async def test_an_unknown_job_type_is_dead_lettered_not_run(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server)
    async with Queue(cfg) as q:
        job_id = await q.enqueue("no-such-handler", {"rm": "-rf /"})
        async with running(cfg, HandlerRegistry()) as w:
            await eventually(lambda: _dead(q, 1), what="unknown type dead-lettered")
            record = await w.broker.get_job(job_id)
    assert record is not None and record["reason"] == "no handler"


async def test_a_job_longer_than_the_lease_is_renewed_not_reaped(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server, heartbeat_ttl="1s")
    runs: list[int] = []
    reg = HandlerRegistry()

    async def long(job: Job) -> None:
        runs.append(job.attempt)
        await asyncio.sleep(2.5)  # the work itself, 2.5 lease lengths

    reg.register("long", long)
    async with Queue(cfg) as q:
        await q.enqueue("long")
        async with running(cfg, reg) as w:
            reaper = Reaper(w.broker, 0.1)
            stop = asyncio.Event()
            reaping = asyncio.create_task(reaper.run(stop))
            await eventually(lambda: _completed(q, 1), timeout=10, what="long job completes")
            stop.set()
            await reaping
        stats = await q.stats()
    assert runs == [1]
    assert stats.counters.get("reaped", 0) == 0


async def test_stopping_lets_short_jobs_finish_and_requeues_long_ones_at_the_head(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server, count=2, shutdown_timeout="300ms")
    started: list[str] = []
    finished: list[str] = []
    reg = HandlerRegistry()

    async def work(job: Job) -> None:
        started.append(job.payload["name"])
        await asyncio.sleep(job.payload["s"])
        finished.append(job.payload["name"])

    reg.register("work", work)
    async with Queue(cfg) as q:
        await q.enqueue("work", {"name": "short", "s": 0.05}, priority="high")
        long_id = await q.enqueue("work", {"name": "long", "s": 60}, priority="high")
        await q.enqueue("work", {"name": "queued", "s": 0}, priority="low")
        worker = Worker(cfg, registry=reg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _true(len(started) == 2), what="both high jobs started")
        stop.set()
        await asyncio.wait_for(task, 10)
        stats = await q.stats()
        record = await q.broker.get_job(long_id)  # the worker closed its own client on exit
        head = await q.broker.peek_ids("high", 1)
    assert finished == ["short"]
    assert record is not None and record["state"] == "pending" and record["attempts"] == "0"
    assert head == [long_id]
    assert (stats.in_flight, stats.pending) == (0, 2)
    assert stats.live_workers == 0


async def test_an_idle_worker_picks_up_a_new_job_without_polling(redis_server: RedisServer, redis: Any) -> None:
    cfg = config(redis_server)
    got = asyncio.Event()
    reg = HandlerRegistry()

    async def mark(job: Job) -> None:
        got.set()

    reg.register("mark", mark)
    async with running(cfg, reg) as w, Queue(cfg) as q:
        await eventually(lambda: _true(w._hungry.is_set()), what="worker idle on the wake list")
        await q.enqueue("mark")
        await asyncio.wait_for(got.wait(), 2)


async def test_a_finished_job_whose_ack_cannot_be_recorded_keeps_its_lease_until_it_is(
    redis_server: RedisServer, redis: Any
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    cfg = config(redis_server, heartbeat_ttl="1s")
    runs: list[int] = []
    reg = HandlerRegistry()

    async def quick(job: Job) -> None:
        runs.append(job.attempt)

    reg.register("quick", quick)
    async with Queue(cfg) as q:
        await q.enqueue("quick")
        worker = Worker(cfg, registry=reg)
        real_run_many = worker.broker.run_many
        acks_fail = True

        async def flaky(calls: Any, *rest: Any) -> Any:
            if acks_fail and any(c.script == "ack" for c in calls):
                raise RedisConnectionError("simulated: the ack's connection was cut")
            return await real_run_many(calls, *rest)

        worker.broker.run_many = flaky  # type: ignore[method-assign]
        stop, reaper_stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        reaping = asyncio.create_task(Reaper(q.broker, 0.1).run(reaper_stop))
        await eventually(lambda: _true(runs == [1]), what="job ran")
        await asyncio.sleep(2.5)  # the scenario itself: two and a half lease lengths with the ack failing
        acks_fail = False
        await eventually(lambda: _completed(q, 1), what="ack recorded once Redis takes it")
        reaper_stop.set()
        stop.set()
        await asyncio.gather(task, reaping)
        stats = await q.stats()
    assert runs == [1]
    assert stats.counters.get("reaped", 0) == 0


async def test_prefetched_jobs_run_and_go_back_to_the_head_in_order_on_stop(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server, count=1, prefetch=3, shutdown_timeout="100ms")
    started: list[int] = []
    release = asyncio.Event()
    reg = HandlerRegistry()

    async def work(job: Job) -> None:
        started.append(job.payload)
        if job.payload == 0:
            await release.wait()

    reg.register("work", work)
    async with Queue(cfg) as q:
        ids = await q.enqueue_many([JobSpec("work", i) for i in range(6)])
        worker = Worker(cfg, registry=reg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _true(len(worker._buffer) == 3), what="three jobs prefetched")
        stats = await q.stats()
        assert (stats.in_flight, stats.pending) == (4, 2)  # 1 running + 3 prefetched are leased
        stop.set()
        release.set()
        await asyncio.wait_for(task, 10)
        head = await q.broker.peek_ids("low", 10)
    assert started == [0]
    assert head == ids[1:]  # prefetched ones back first, in their order, then the rest


async def test_an_ack_whose_reply_was_lost_is_re_sent_and_its_refusal_is_not_called_a_takeover(
    redis_server: RedisServer, redis: Any, caplog: Any
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    cfg = config(redis_server)
    reg = HandlerRegistry()

    async def quick(job: Job) -> None:
        pass

    reg.register("quick", quick)
    async with Queue(cfg) as q:
        await q.enqueue("quick")
        worker = Worker(cfg, registry=reg)
        real_run_many = worker.broker.run_many
        dropped = False

        async def reply_lost(calls: Any, *rest: Any) -> Any:
            nonlocal dropped
            result = await real_run_many(calls, *rest)
            if not dropped and any(c.script == "ack" for c in calls):
                dropped = True
                raise RedisConnectionError("simulated: the reply to the ack was lost")
            return result

        worker.broker.run_many = reply_lost  # type: ignore[method-assign]
        stop = asyncio.Event()
        with caplog.at_level("INFO", logger="jobqueue.worker"):
            task = asyncio.create_task(worker.run(stop))
            await eventually(lambda: _true(dropped and not worker._outcomes and not worker._unsettled), what="re-sent")
            stop.set()
            await task
        stats = await q.stats()
    assert stats.counters.get("completed") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("result refused on re-send") for m in messages)
    assert "result refused: lease was taken over" not in messages


async def test_a_worker_whose_redis_vanishes_during_start_up_waits_for_it_or_stops_cleanly() -> None:
    server = RedisServer().start()
    try:
        cfg = config(server)
        server.kill()  # gone between the supervisor's reachability check and the worker's first call
        worker = Worker(cfg, registry=HandlerRegistry())
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        errors = worker.metrics.redis_errors.labels("dispatch")
        await eventually(lambda: _true(errors._value.get() >= 2), what="start-up retried")
        assert not task.done()
        server.start()
        async with Queue(cfg) as q:
            await eventually(lambda: _live(q, 1), what="worker registered once Redis is back")
            stop.set()
            await asyncio.wait_for(task, 10)

        server.kill()  # and a worker told to stop while Redis is still away just stops
        worker = Worker(cfg, registry=HandlerRegistry())
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _true(worker.metrics.redis_errors.labels("dispatch")._value.get() >= 1), what="retry")
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        server.cleanup()


async def _live(q: Queue, n: int) -> bool:
    return (await q.stats()).live_workers == n


async def test_jobs_run_in_count_long_lived_slots(redis_server: RedisServer, redis: Any) -> None:
    """No task per job: every job runs in one of worker.count slot tasks, which keep turning the
    event loop between bursts of handlers that never suspend."""
    cfg = config(redis_server, count=2, prefetch=50, handoff=False)
    tasks: set[asyncio.Task[Any] | None] = set()
    turns = 0
    reg = HandlerRegistry()

    async def quick(job: Job) -> None:
        tasks.add(asyncio.current_task())

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    reg.register("quick", quick)
    async with Queue(cfg) as q:
        await q.enqueue_many([JobSpec("quick", i) for i in range(300)])
        tick = asyncio.create_task(ticker())
        try:
            async with running(cfg, reg):
                await eventually(lambda: _completed(q, 300), what="all jobs done")
        finally:
            tick.cancel()
    assert 1 <= len(tasks) <= 2
    assert turns >= 300 // 32  # a burst of non-suspending jobs lets the loop turn at least this often


async def test_a_handler_that_swallows_its_timeout_leaves_its_slot_clean(redis_server: RedisServer, redis: Any) -> None:
    """The slot task goes on to the next job: a cancel the handler ignored must not linger on it
    (it would break the next job's own asyncio.timeout)."""
    cfg = config(redis_server, count=1, max_retries=0)
    seen: list[tuple[str, Any]] = []
    reg = HandlerRegistry()

    async def stubborn(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(("swallowed", None))

    async def careful(job: Job) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.append(("cancelling", task.cancelling()))
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        except TimeoutError:
            seen.append(("own timeout", None))

    reg.register("stubborn", stubborn)
    reg.register("careful", careful)
    async with Queue(cfg) as q:
        await q.enqueue("stubborn", None, timeout=0.05, priority="high")
        await q.enqueue("careful", None, priority="low")
        async with running(cfg, reg):
            await eventually(lambda: _completed(q, 2), what="both jobs recorded")
    assert seen == [("swallowed", None), ("cancelling", 0), ("own timeout", None)]


async def test_stopping_does_not_wait_forever_for_a_handler_that_swallows_the_cancel(
    redis_server: RedisServer, redis: Any
) -> None:
    cfg = config(redis_server, count=2, shutdown_timeout="200ms")
    started = asyncio.Event()
    reg = HandlerRegistry()

    async def stubborn(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # ignores the drain's cancel and "completes"

    reg.register("stubborn", stubborn)
    async with Queue(cfg) as q:
        await q.enqueue("stubborn")
        worker = Worker(cfg, registry=reg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(started.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 10)
