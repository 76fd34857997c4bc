"""Direct handoff: enqueue leases a new job straight to an idle worker, which starts it on the reply
to its blocking read (no claim round trip). Script level (every key asserted) and worker level."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from polling import eventually
from redis.asyncio import Redis
from redis_server import RedisServer
from snapshot import snapshot

import jobqueue
from jobqueue import HandlerRegistry, Job, Queue, Worker
from jobqueue.broker import Broker, EnqueueItem, parse_handoff
from jobqueue.clock import FakeClock
from jobqueue.job import ClaimedJob
from jobqueue.roles import worker as worker_mod

T = FakeClock().now_ms()
P = "jobqueue:{test}:"
LEASE = 30_000
IDLE = 3_000


def item(job_id: str, prio: str = "low", **kw: Any) -> EnqueueItem:
    return EnqueueItem(job_id, prio, f'{{"id":"{job_id}"}}'.encode(), **kw)


def handed(job_id: str, token: str, prio: str = "low") -> str:
    return f'{token}\x1f{job_id}\x1f{prio}\x1f0\x1f{T}\x1f{{"id":"{job_id}"}}'


def leased(job_id: str, token: str, worker: str, prio: str = "low") -> dict[str, str]:
    return {
        "data": f'{{"id":"{job_id}"}}',
        "prio": prio,
        "state": "active",
        "attempts": "0",
        "max_retries": "3",
        "enq_ms": str(T),
        "ready_ms": str(T),
        "token": token,
        "worker": worker,
        "started_ms": str(T),
    }


# ---------------------------------------------------------------- scripts


async def test_a_claim_that_finds_the_queue_dry_registers_the_worker_idle_with_its_free_slots(
    broker: Broker, redis: Redis
) -> None:
    await broker.enqueue([item("a")])
    await redis.delete(P + "wake")
    assert [c.id for c in await broker.claim(3, LEASE, "w1", IDLE)] == ["a"]
    state = await snapshot(redis)
    assert state[P + "idle"] == {"w1": T + IDLE}
    assert state[P + "idle_slots"] == {"w1": f"2 {LEASE}"}


async def test_only_free_run_slots_are_offered_not_prefetch_room(broker: Broker, redis: Redis) -> None:
    """A handed-off job should start at once: a worker whose run slots are all taken (it claims
    only to fill its prefetch buffer) is not registered, and one with 2 free gets at most 2."""
    await broker.enqueue([item("a")])
    await redis.delete(P + "wake")
    assert [c.id for c in await broker.claim(8, LEASE, "busy", IDLE, idle_slots=0)] == ["a"]
    await broker.claim(8, LEASE, "some", IDLE, idle_slots=2)
    state = await snapshot(redis)
    assert state[P + "idle"] == {"some": T + IDLE}
    assert state[P + "idle_slots"] == {"some": f"2 {LEASE}"}


async def test_a_full_claim_or_one_without_a_time_to_live_leaves_the_idle_registry(
    broker: Broker, redis: Redis
) -> None:
    await broker.claim(2, LEASE, "w1", IDLE)
    await broker.enqueue([item("a"), item("b")])  # handed to w1
    await broker.claim(2, LEASE, "w2", IDLE)
    await broker.enqueue([item("c")])
    assert [c.id for c in await broker.claim(1, LEASE, "w2", IDLE)] == ["c"]  # full: w2 leaves
    assert await redis.zrange(P + "idle", 0, -1) == []
    await broker.claim(4, LEASE, "w3", IDLE)
    await broker.claim(4, LEASE, "w3")  # no ttl: not idle any more
    state = await snapshot(redis)
    assert P + "idle" not in state and P + "idle_slots" not in state


async def test_enqueue_leases_ready_jobs_to_the_idle_worker_up_to_its_free_slots_then_queues(
    broker: Broker, redis: Redis
) -> None:
    await broker.claim(2, LEASE, "w1", IDLE)
    assert await broker.enqueue([item("a"), item("b", "high"), item("c")]) == [True, True, True]
    pending_c = {k: v for k, v in leased("c", "", "").items() if k not in ("token", "worker", "started_ms")}
    assert await snapshot(redis) == {
        P + "job:a": leased("a", "1", "w1"),
        P + "job:b": leased("b", "2", "w1", "high"),
        P + "job:c": {**pending_c, "state": "pending"},
        P + "active": {"a": T + LEASE, "b": T + LEASE},
        P + "handoff:w1": [handed("a", "1"), handed("b", "2", "high")],
        P + "pending:low": ["c"],
        P + "wake": ["1"],
    }


async def test_enqueue_hands_to_the_longest_idle_worker_first_and_skips_scheduled_jobs(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.claim(1, LEASE, "early", IDLE)
    clock.advance(0.5)
    await broker.claim(1, 10_000, "late", IDLE)
    now = clock.now_ms()
    await broker.enqueue([item("later", due_ms=now + 5_000), item("a"), item("b")])
    state = await snapshot(redis)
    assert state[P + "job:later"]["state"] == "scheduled"
    assert state[P + "job:a"]["worker"] == "early" and state[P + "job:b"]["worker"] == "late"
    assert state[P + "active"] == {"a": now + LEASE, "b": now + 10_000}  # each worker's own lease
    assert P + "idle" not in state and P + "idle_slots" not in state  # both out of slots
    assert P + "wake" not in state  # nothing waits in a pending list


async def test_an_expired_idle_registration_is_dropped_and_the_job_queued(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.claim(4, LEASE, "gone", IDLE)
    clock.advance(IDLE / 1000 + 0.001)
    await broker.enqueue([item("a")])
    state = await snapshot(redis)
    assert state[P + "pending:low"] == ["a"] and state[P + "job:a"]["state"] == "pending"
    assert P + "idle" not in state and P + "idle_slots" not in state
    assert P + "handoff:gone" not in state


async def test_claim_takes_its_handed_off_jobs_first_and_skips_those_reaped_meanwhile(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.claim(2, LEASE, "w1", IDLE)
    await broker.enqueue([item("a"), item("b")])
    await redis.delete(P + "wake")
    await redis.hset(P + "job:b", "token", "99")  # b was reaped and leased again elsewhere
    clock.advance(1)
    claimed = await broker.claim(0, LEASE, "w1", IDLE)
    assert [(c.id, c.token, c.priority, c.attempts, c.raw) for c in claimed] == [("a", "1", "low", 0, b'{"id":"a"}')]
    state = await snapshot(redis)
    assert state[P + "active"] == {"a": clock.now_ms() + LEASE, "b": T + LEASE}  # a's lease renewed
    assert P + "handoff:w1" not in state
    assert P + "idle" not in state  # claim(0) never registers


async def test_the_blocking_read_returns_a_handed_off_job_a_wake_token_or_nothing(
    broker: Broker, redis: Redis, redis_server: RedisServer
) -> None:
    blocking = Redis.from_url(redis_server.url)
    try:
        assert await broker.wait_for_work(blocking, "w1", 0.01) is False
        await broker.claim(1, LEASE, "w1", IDLE)
        waiting = asyncio.create_task(broker.wait_for_work(blocking, "w1", 5))
        await broker.enqueue([item("a", "high")])
        got = await asyncio.wait_for(waiting, 5)
        assert got == ClaimedJob("a", "1", "high", 0, T, b'{"id":"a"}', False)
        await broker.enqueue([item("b")])  # no idle slot left: queued, wake token
        assert await broker.wait_for_work(blocking, "w1", 1) is True
    finally:
        await blocking.aclose()


def test_a_handoff_entry_keeps_any_bytes_of_the_job() -> None:
    raw = b'{"id":"x","payload":"a\x1fb\\n\xc3\xa9"}'
    cj = parse_handoff(b"7\x1fx\x1fhigh\x1f2\x1f123\x1f" + raw)
    assert (cj.token, cj.id, cj.priority, cj.attempts, cj.ready_ms, cj.raw) == ("7", "x", "high", 2, 123, raw)


async def test_reap_recovers_a_dead_idle_workers_handed_off_job_and_clears_its_registration(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.register_worker("dead", LEASE, {"host": "h"})
    await broker.claim(4, LEASE, "dead", IDLE)
    await broker.enqueue([item("a")])  # handed to a worker that never reads it
    clock.advance(LEASE / 1000 + 1)
    assert (await broker.reap()).requeued == ["a"]
    state = await snapshot(redis)
    assert state[P + "pending:low"] == ["a"] and state[P + "job:a"]["state"] == "pending"
    for key in ("idle", "idle_slots", "handoff:dead", "workers", "active"):
        assert P + key not in state, key


async def test_unregister_leaves_the_idle_registry(broker: Broker, redis: Redis) -> None:
    await broker.register_worker("w1", LEASE, {"host": "h"})
    await broker.claim(4, LEASE, "w1", IDLE)
    assert await broker.unregister_worker("w1") is True
    assert await snapshot(redis) == {}


# ---------------------------------------------------------------- worker


def config(server: RedisServer, **worker: Any) -> jobqueue.Config:
    return jobqueue.build_config(
        {
            "queue_name": "ho",
            "redis": {"url": server.url},
            "worker": {"count": 2, "heartbeat_ttl": "30s", "shutdown_timeout": "200ms", **worker},
            "circuit_breaker": {"enabled": False},
            "observability": {"metrics_port": 0},
        }
    )


@pytest.fixture
def quiet_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle worker that claims only when told to: no periodic claim or wake timeout in the test's time."""
    monkeypatch.setattr(worker_mod, "PROMOTE_INTERVAL_S", 60.0)
    monkeypatch.setattr(worker_mod, "WAKE_WAIT_S", 60.0)
    monkeypatch.setattr(worker_mod, "IDLE_TTL_MS", 120_000)


async def _is_idle(redis: Redis, worker_id: str) -> bool:
    return await redis.zscore("jobqueue:{ho}:idle", worker_id) is not None


async def _blocked_clients(redis: Redis, n: int) -> bool:
    return int((await redis.info("clients"))["blocked_clients"]) == n


async def _until_waiting_for_handoffs(redis: Redis, worker: Worker) -> None:
    await eventually(lambda: _is_idle(redis, worker.worker_id), what="worker registered idle")
    await eventually(lambda: _blocked_clients(redis, 1), what="worker blocked on its handoff list")


def _recording_worker(cfg: jobqueue.Config, reg: HandlerRegistry, scripts: list[str]) -> Worker:
    """A worker whose Redis round trips append the names of the scripts they send to ``scripts``."""
    worker = Worker(cfg, registry=reg)
    real = worker.broker.run_many

    async def recording(calls: Any, *rest: Any) -> Any:
        scripts.extend(c.script for c in calls)
        return await real(calls, *rest)

    worker.broker.run_many = recording  # type: ignore[method-assign]
    return worker


@pytest.mark.usefixtures("quiet_idle")
async def test_an_idle_worker_starts_a_new_job_from_the_handoff_without_a_claim(
    redis_server: RedisServer, redis: Redis
) -> None:
    cfg = config(redis_server)
    got = asyncio.Event()
    reg = HandlerRegistry()
    scripts: list[str] = []
    before_start: list[str] = []

    async def mark(job: Job) -> None:
        before_start.extend(scripts)
        got.set()

    reg.register("mark", mark)
    worker = _recording_worker(cfg, reg, scripts)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with Queue(cfg) as q:
        await _until_waiting_for_handoffs(redis, worker)
        scripts.clear()
        job_id = await q.enqueue("mark")
        await asyncio.wait_for(got.wait(), 5)
        assert before_start == []  # started from the blocking read's reply: no claim, no round trip
        await eventually(lambda: _completed(q, 1), what="ack recorded")
        record = await q.broker.get_job(job_id)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert record is not None and record["state"] == "completed"
    assert await redis.zrange("jobqueue:{ho}:idle", 0, -1) == []  # left the registry at stop


@pytest.mark.usefixtures("quiet_idle")
async def test_a_job_handed_off_while_another_runs_is_taken_by_the_next_waker(
    redis_server: RedisServer, redis: Redis
) -> None:
    """The waker runs a handed-off job in its own task; a new waker takes over the blocking read,
    so a second handoff starts while the first job still runs, again without a claim."""
    cfg = config(redis_server)
    first_started, second_started = asyncio.Event(), asyncio.Event()
    reg = HandlerRegistry()
    scripts: list[str] = []
    between: list[str] = []

    async def first(job: Job) -> None:
        scripts.clear()
        first_started.set()
        await asyncio.wait_for(second_started.wait(), 5)  # holds its slot until the second runs

    async def second(job: Job) -> None:
        between.extend(scripts)
        second_started.set()

    reg.register("first", first)
    reg.register("second", second)
    worker = _recording_worker(cfg, reg, scripts)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with Queue(cfg) as q:
        await _until_waiting_for_handoffs(redis, worker)
        await q.enqueue("first")
        await asyncio.wait_for(first_started.wait(), 5)
        await eventually(lambda: _blocked_clients(redis, 1), what="the next waker blocked on the handoff list")
        await q.enqueue("second")
        await asyncio.wait_for(second_started.wait(), 5)
        assert "claim" not in between
        await eventually(lambda: _completed(q, 2), what="both acks recorded")
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_with_handoff_off_an_idle_worker_is_woken_and_claims(redis_server: RedisServer, redis: Redis) -> None:
    cfg = config(redis_server, handoff=False)
    got = asyncio.Event()
    reg = HandlerRegistry()

    async def mark(job: Job) -> None:
        got.set()

    reg.register("mark", mark)
    worker = Worker(cfg, registry=reg)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with Queue(cfg) as q:
        await eventually(lambda: _true(worker._hungry.is_set()), what="worker idle")
        assert not await _is_idle(redis, worker.worker_id)
        await q.enqueue("mark")
        await asyncio.wait_for(got.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.mark.usefixtures("quiet_idle")
async def test_jobs_handed_to_a_stopping_worker_go_back_to_the_queue_in_order(
    redis_server: RedisServer, redis: Redis
) -> None:
    cfg = config(redis_server, count=4)
    ran: list[str] = []
    reg = HandlerRegistry()

    async def mark(job: Job) -> None:
        ran.append(job.id)

    reg.register("mark", mark)
    worker = Worker(cfg, registry=reg)

    async def deaf(*_: Any) -> bool:  # the blocking read never returns: handoffs stay on the list
        await asyncio.Event().wait()
        return False

    worker.broker.wait_for_work = deaf  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with Queue(cfg) as q:
        await eventually(lambda: _is_idle(redis, worker.worker_id), what="worker registered idle")
        ids = [await q.enqueue("mark", job_id=f"j{i}") for i in range(3)]
        assert len(await redis.lrange(f"jobqueue:{{ho}}:handoff:{worker.worker_id}", 0, -1)) == 3
        stop.set()
        await asyncio.wait_for(task, 10)
        head = await q.broker.peek_ids("low", 10)
        stats = await q.stats()
    assert ran == []
    assert head == ids
    assert (stats.in_flight, stats.pending) == (0, 3)
    state = await snapshot(redis)
    assert not [k for k in state if ":idle" in k or ":handoff:" in k]


async def _true(value: bool) -> bool:
    return value


async def _completed(q: Queue, n: int) -> bool:
    return (await q.stats()).counters.get("completed", 0) >= n


async def test_a_job_whose_lease_ran_out_before_it_started_is_left_to_the_reaper(
    redis_server: RedisServer,
) -> None:
    """A handoff read (or a prefetched job started) after a pause longer than the lease, e.g. a
    frozen process, may already be another worker's: it is not run, the reaper has it."""
    cfg = config(redis_server)
    clock = FakeClock()
    ran: list[str] = []
    reg = HandlerRegistry()

    async def mark(job: Job) -> None:
        ran.append(job.id)

    reg.register("mark", mark)
    worker = Worker(cfg, registry=reg, clock=clock)
    try:
        lease = worker.lease_ms
        stale = ClaimedJob("old", "1", "low", 0, clock.now_ms() - lease - 1, b'{"id":"old","type":"mark"}', False)
        assert await worker._handed_off(stale) is None  # enqueue leased it more than a lease ago
        fresh = ClaimedJob("new", "2", "low", 0, clock.now_ms() - lease + 1000, b'{"id":"new","type":"mark"}', False)
        start = await worker._handed_off(fresh)  # to run in the waker's task
        assert start is not None
        await worker._execute(*start)
        assert ran == ["new"]
        assert worker.metrics.queue("low").lease_lost.value == 1
    finally:
        await worker.redis.aclose()
        await worker.blocking.aclose()
