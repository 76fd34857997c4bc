"""Each Lua transition against a real Redis: seed the state, run one script, assert every key.

Following asynq's rdb tests: the expected state is written out whole, so a script that touches
a key it should not (or forgets one) fails here.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from snapshot import snapshot

from jobqueue.broker import Broker, EnqueueItem
from jobqueue.clock import FakeClock
from jobqueue.scripts import load_script, script_names

T = FakeClock().now_ms()
P = "jobqueue:{test}:"
LEASE = 30_000


def job_hash(state: str, prio: str = "low", attempts: int = 0, data: str = '{"id":"a"}', **extra: object) -> dict:
    h = {
        "data": data,
        "prio": prio,
        "state": state,
        "attempts": str(attempts),
        "max_retries": "3",
        "enq_ms": str(T),
        "ready_ms": str(T),
    }
    h.update({k: str(v) for k, v in extra.items()})
    return h


async def seed_pending(broker: Broker, *ids_prios: tuple[str, str]) -> None:
    await broker.enqueue([EnqueueItem(i, p, f'{{"id":"{i}"}}'.encode()) for i, p in ids_prios])


async def claim_one(broker: Broker) -> tuple[str, str]:
    (cj,) = await broker.claim(1, LEASE, "w1")
    return cj.id, cj.token


# ---------------------------------------------------------------- enqueue


async def test_enqueue_adds_ready_jobs_to_their_priority_and_wakes_a_worker(broker: Broker, redis: Redis) -> None:
    assert await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}'), EnqueueItem("b", "high", b'{"id":"b"}')]) == [
        True,
        True,
    ]
    assert await snapshot(redis) == {
        P + "job:a": job_hash("pending"),
        P + "job:b": job_hash("pending", "high", data='{"id":"b"}'),
        P + "pending:low": ["a"],
        P + "pending:high": ["b"],
        P + "wake": ["1"],
    }


async def test_enqueue_with_a_due_time_schedules_the_job(broker: Broker, redis: Redis) -> None:
    await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}', due_ms=T + 5000)])
    assert await snapshot(redis) == {
        P + "job:a": job_hash("scheduled", ready_ms=T + 5000),
        P + "scheduled": {"a": T + 5000},
    }


async def test_enqueue_of_an_existing_id_changes_nothing(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    before = await snapshot(redis)
    assert await broker.enqueue([EnqueueItem("a", "high", b'{"other":1}')]) == [False]
    assert await snapshot(redis) == before


async def test_enqueue_publishes_only_when_an_empty_queue_receives_work(broker: Broker, redis: Redis) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(broker.keys.events_channel)
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    await seed_pending(broker, ("a", "low"))
    await seed_pending(broker, ("b", "low"))
    first = await pubsub.get_message(timeout=1)
    second = await pubsub.get_message(timeout=0.2)
    await pubsub.aclose()
    assert first is not None and first["data"] == b"enqueued"
    assert second is None


# ---------------------------------------------------------------- claim


async def test_claim_takes_strictly_by_priority_then_fifo_and_leases(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("l1", "low"), ("l2", "low"), ("h1", "high"))
    await redis.delete(P + "wake")
    claimed = await broker.claim(2, LEASE, "w1")
    assert [(c.id, c.priority, c.token) for c in claimed] == [("h1", "high", "1"), ("l1", "low", "2")]
    state = await snapshot(redis)
    assert state == {
        P + "job:h1": job_hash("active", "high", data='{"id":"h1"}', token=1, worker="w1", started_ms=T),
        P + "job:l1": job_hash("active", data='{"id":"l1"}', token=2, worker="w1", started_ms=T),
        P + "job:l2": job_hash("pending", data='{"id":"l2"}'),
        P + "pending:low": ["l2"],
        P + "active": {"h1": T + LEASE, "l1": T + LEASE},
        P + "wake": ["1"],  # claimed all it asked for and work remains: chain wake
    }


async def test_claim_on_an_empty_queue_returns_nothing_and_writes_nothing(broker: Broker, redis: Redis) -> None:
    assert await broker.claim(8, LEASE, "w1") == []
    assert await snapshot(redis) == {}


async def test_claim_gives_a_raw_list_entry_a_record_instead_of_dropping_it(broker: Broker, redis: Redis) -> None:
    await redis.lpush(P + "pending:low", "not json at all")
    (cj,) = await broker.claim(5, LEASE, "w1")
    assert (cj.id, cj.is_raw_entry, cj.raw) == ("raw-1", True, b"not json at all")
    h = await snapshot(redis)
    assert h[P + "job:raw-1"]["data"] == "not json at all"
    assert h[P + "job:raw-1"]["state"] == "active"
    assert h[P + "active"] == {"raw-1": T + LEASE}


async def test_claim_skips_a_duplicate_entry_of_a_job_that_is_not_pending(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    await claim_one(broker)
    await redis.lpush(P + "pending:low", "a")  # a stray duplicate
    assert await broker.claim(5, LEASE, "w2") == []
    assert (await snapshot(redis))[P + "job:a"]["worker"] == "w1"


async def test_claim_of_a_large_mixed_batch_leases_each_job_once_in_order(broker: Broker, redis: Redis) -> None:
    """Over the script's 500-job ZADD chunk, with raw entries and stray duplicates among them."""
    ids = [f"j{i}" for i in range(1200)]
    for start in range(0, len(ids), 400):
        await seed_pending(broker, *[(i, "low") for i in ids[start : start + 400]])
    await redis.lpush(P + "pending:low", "j0", "not json")  # popped after every seeded job
    claimed = await broker.claim(1300, LEASE, "w1")
    assert [c.id for c in claimed] == [*ids, "raw-1"]  # the stray "j0" is skipped: not pending
    assert [c.is_raw_entry for c in claimed] == [False] * 1200 + [True]
    tokens = [int(c.token) for c in claimed]
    assert len(set(tokens)) == len(tokens)
    assert sorted(tokens) == tokens
    state = await snapshot(redis)
    assert state[P + "active"] == {i: T + LEASE for i in [*ids, "raw-1"]}
    assert all(state[P + "job:" + c.id]["token"] == c.token for c in claimed)
    assert P + "pending:low" not in state


async def test_ack_of_a_large_batch_completes_each_job_once(broker: Broker, redis: Redis) -> None:
    """Over the script's 1000-key chunk; an id given twice in one call is acked once."""
    ids = [f"j{i}" for i in range(1100)]
    for start in range(0, len(ids), 550):
        await seed_pending(broker, *[(i, "low") for i in ids[start : start + 550]])
    claimed = await broker.claim(1100, LEASE, "w1")
    items = [(c.id, c.token, 1) for c in claimed]
    assert await broker.ack([*items, items[0]], keep=2000, remember_ms=60_000) == [True] * 1100 + [False]
    state = await snapshot(redis)
    assert state[P + "stats"] == {"completed": "1100"}
    assert len(state[P + "completed"]) == 1100
    assert all(state[P + "job:" + i] == {"state": "completed", "completed_ms": str(T)} for i in ids)
    assert P + "active" not in state


# ---------------------------------------------------------------- extend_lease


async def test_extend_lease_renews_held_leases_and_reports_lost_ones(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await seed_pending(broker, ("a", "low"), ("b", "low"))
    (a, ta), (b, _tb) = [(c.id, c.token) for c in await broker.claim(2, LEASE, "w1")]
    clock.advance(10)
    lost = await broker.extend_lease("w1", LEASE, [(a, ta), (b, "999")])
    assert lost == [b]
    state = await snapshot(redis)
    assert state[P + "active"] == {a: clock.now_ms() + LEASE, b: T + LEASE}
    assert state[P + "workers"] == {"w1": clock.now_ms() + LEASE}


# ---------------------------------------------------------------- ack / retry / bury / release


async def test_ack_completes_the_job_and_keeps_a_bounded_summary(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    await redis.delete(P + "wake")
    a, token = await claim_one(broker)
    assert await broker.ack([(a, token, 12)], keep=10) == [True]
    assert await snapshot(redis) == {
        P + "completed": [
            f'{{"id":"a","priority":"low","attempts":0,"completed_ms":{T},"duration_ms":12,"job":{{"id":"a"}}}}'
        ],
        P + "stats": {"completed": "1"},
    }


async def test_an_acked_id_is_remembered_so_a_retried_enqueue_does_not_run_it_again(
    broker: Broker, redis: Redis
) -> None:
    await seed_pending(broker, ("a", "low"))
    await redis.delete(P + "wake")
    a, token = await claim_one(broker)
    assert await broker.ack([(a, token, 3)], keep=0, remember_ms=60_000) == [True]
    assert await snapshot(redis) == {
        P + "job:a": {"state": "completed", "completed_ms": str(T)},
        P + "stats": {"completed": "1"},
    }
    assert 0 < await redis.pttl(P + "job:a") <= 60_000
    assert await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}')]) == [False]  # the producer's retry
    await redis.lpush(P + "pending:low", "a")  # even a stray entry of it is not run again
    assert await broker.claim(1, LEASE, "w2") == []


async def test_ack_with_a_stale_token_is_refused_and_changes_nothing(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    a, token = await claim_one(broker)
    before = await snapshot(redis)
    assert await broker.ack([(a, str(int(token) + 1), 1)]) == [False]
    assert await broker.ack([("missing", token, 1)]) == [False]
    assert await snapshot(redis) == before


async def test_retry_schedules_the_job_and_counts_the_attempt(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    await redis.delete(P + "wake")
    a, token = await claim_one(broker)
    assert await broker.retry([(a, token, T + 500, "boom")]) == [True]
    assert await snapshot(redis) == {
        P + "job:a": job_hash("scheduled", attempts=1, error="boom", ready_ms=T + 500),
        P + "scheduled": {"a": T + 500},
        P + "stats": {"retried": "1"},
    }


async def test_bury_keeps_payload_reason_error_attempts_and_time(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"))
    await redis.delete(P + "wake")
    a, token = await claim_one(broker)
    assert await broker.bury([(a, token, "max retries exceeded", "ValueError: x", True)]) == [True]
    assert await snapshot(redis) == {
        P + "job:a": job_hash("dead", attempts=1, reason="max retries exceeded", error="ValueError: x", dead_ms=T),
        P + "dead": {"a": T},
        P + "stats": {"dead": "1"},
    }


@pytest.mark.parametrize("script", ["retry", "bury", "release"])
async def test_every_final_transition_refuses_a_stale_token(broker: Broker, redis: Redis, script: str) -> None:
    await seed_pending(broker, ("a", "low"))
    a, _ = await claim_one(broker)
    before = await snapshot(redis)
    if script == "retry":
        result = await broker.retry([(a, "0", T, "e")])
    elif script == "bury":
        result = await broker.bury([(a, "0", "r", "e", True)])
    else:
        result = await broker.release([(a, "0")])
    assert result == [False]
    assert await snapshot(redis) == before


async def test_release_puts_the_job_back_at_the_head_without_counting_an_attempt(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"), ("b", "low"))
    await redis.delete(P + "wake")
    a, token = await claim_one(broker)
    assert await broker.release([(a, token)]) == [True]
    state = await snapshot(redis)
    assert state[P + "job:a"] == job_hash("pending")
    assert state[P + "pending:low"] == ["b", "a"]  # RPOP side is the head: a is next again
    assert P + "active" not in state
    assert (await broker.claim(1, LEASE, "w2"))[0].id == "a"


# ---------------------------------------------------------------- promote


async def test_promote_moves_only_due_jobs_and_reports_the_next_due_time(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.enqueue(
        [
            EnqueueItem("soon", "high", b'{"id":"soon"}', due_ms=T + 1000),
            EnqueueItem("later", "low", b'{"id":"later"}', due_ms=T + 9000),
        ]
    )
    assert await broker.promote() == (0, T + 1000)
    clock.advance(1)
    assert await broker.promote() == (1, T + 9000)
    state = await snapshot(redis)
    assert state[P + "pending:high"] == ["soon"]
    assert state[P + "scheduled"] == {"later": T + 9000}
    assert state[P + "job:soon"]["state"] == "pending"
    assert state[P + "job:soon"]["ready_ms"] == str(T + 1000)
    assert state[P + "wake"] == ["1"]


# ---------------------------------------------------------------- reap


async def test_reap_requeues_expired_leases_at_the_head_and_counts_the_lost_attempt(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await seed_pending(broker, ("a", "low"), ("b", "low"))
    await redis.delete(P + "wake")
    a, _ = await claim_one(broker)
    await broker.register_worker("w1", LEASE, {"host": "h"})
    clock.advance(LEASE / 1000 - 1)
    assert (await broker.reap()).requeued == []  # not yet expired
    clock.advance(2)
    result = await broker.reap()
    assert (result.requeued, result.dead) == ([a], [])
    state = await snapshot(redis)
    assert state[P + "pending:low"] == ["b", "a"]
    assert state[P + "job:a"] == job_hash(
        "pending", attempts=1, error="lease expired: worker w1 stopped renewing", ready_ms=clock.now_ms()
    )
    assert state[P + "stats"] == {"reaped": "1"}
    assert P + "active" not in state
    assert P + "workers" not in state  # the dead worker's registration was pruned too


async def test_reap_dead_letters_a_job_whose_attempts_are_exhausted_by_crashes(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await broker.enqueue([EnqueueItem("a", "low", b'{"id":"a"}', max_retries=1)])
    for _ in range(2):
        await claim_one(broker)
        clock.advance(LEASE / 1000 + 1)
        result = await broker.reap()
    assert (result.requeued, result.dead) == ([], ["a"])
    state = await snapshot(redis)
    assert state[P + "job:a"]["state"] == "dead"
    assert state[P + "job:a"]["reason"] == "lease expired"
    assert state[P + "job:a"]["attempts"] == "2"
    assert state[P + "dead"] == {"a": clock.now_ms()}


async def test_an_ack_after_the_lease_was_reaped_and_reclaimed_is_refused(
    broker: Broker, redis: Redis, clock: FakeClock
) -> None:
    await seed_pending(broker, ("a", "low"))
    a, old_token = await claim_one(broker)
    clock.advance(LEASE / 1000 + 1)
    await broker.reap()
    (cj,) = await broker.claim(1, LEASE, "w2")
    assert await broker.ack([(a, old_token, 1)]) == [False]  # fencing: the old worker lost it
    assert await broker.ack([(a, cj.token, 1)]) == [True]


# ---------------------------------------------------------------- admin scripts, rate limit, stats


async def test_requeue_dlq_moves_dead_jobs_back_with_attempts_reset(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "high"))
    a, token = await claim_one(broker)
    await broker.bury([(a, token, "r", "e", True)])
    await redis.delete(P + "wake")
    assert await broker.requeue_dlq() == [a]
    state = await snapshot(redis)
    assert state[P + "pending:high"] == [a]
    assert state[P + "job:a"]["attempts"] == "0"
    assert state[P + "job:a"]["state"] == "pending"
    assert "reason" not in state[P + "job:a"]
    assert P + "dead" not in state
    assert await broker.requeue_dlq("nope") == []


async def test_purge_dlq_deletes_dead_jobs_and_their_records_only(broker: Broker, redis: Redis) -> None:
    await seed_pending(broker, ("a", "low"), ("b", "low"))
    a, token = await claim_one(broker)
    await broker.bury([(a, token, "r", "e", True)])
    assert await broker.purge_dlq(batch=1) == 1
    state = await snapshot(redis)
    assert P + "job:a" not in state and P + "dead" not in state
    assert state[P + "pending:low"] == ["b"]


async def test_rate_limit_grants_up_to_the_limit_then_reports_the_wait(broker: Broker, redis: Redis) -> None:
    assert await broker.rate_limit(3, 1000, 2) == 0
    assert await broker.rate_limit(3, 1000, 1) == 0
    wait = await broker.rate_limit(3, 1000, 1)
    assert 0 < wait <= 1000
    assert await redis.get(P + "ratelimit") == b"3"  # a refused request takes no permit
    assert 0 < await redis.pttl(P + "ratelimit") <= 1000


async def test_queue_stats_reads_every_figure_in_one_call(broker: Broker, redis: Redis, clock: FakeClock) -> None:
    await seed_pending(broker, ("a", "high"), ("b", "low"), ("c", "low"))
    await broker.enqueue([EnqueueItem("d", "low", b"{}", due_ms=T + 1)])
    await claim_one(broker)
    await broker.register_worker("w1", LEASE, {})
    clock.advance(2)
    s = await broker.queue_stats()
    assert [(p.name, p.pending, p.oldest_ready_ms) for p in s.priorities] == [("high", 0, None), ("low", 2, T)]
    assert (s.in_flight, s.scheduled, s.scheduled_due, s.dead, s.live_workers) == (1, 1, 1, 0, 1)
    assert s.backlog() == 4 and s.backlog(count_in_flight=False, count_delayed_due=False) == 2
    assert s.oldest_age_s == 2.0


# ---------------------------------------------------------------- headers


def test_every_script_has_a_header_and_its_wrapper_passes_matching_keys_and_args(broker: Broker) -> None:
    calls = {
        "enqueue": broker.enqueue_call([EnqueueItem("a", "low", b"{}")]),
        "claim": broker.claim_call(1, LEASE, "w"),
        "promote": broker.promote_call(),
        "extend_lease": broker.extend_lease_call("w", LEASE, [("a", "1")]),
        "ack": broker.ack_call([("a", "1", 1)], 10),
        "retry": broker.retry_call([("a", "1", T, "e")]),
        "bury": broker.bury_call([("a", "1", "r", "e", True)]),
        "release": broker.release_call([("a", "1")]),
    }
    for name in script_names():
        src = load_script(name)
        assert src.source.startswith("-- "), f"{name}.lua has no header"
        assert "Returns:" in src.source, f"{name}.lua header does not say what it returns"
        nkeys, keys_var, nargv, argv_var = src.header_counts()
        assert nkeys >= 1, name
        call = calls.get(name)
        if call is None:
            continue
        assert len(call.keys) == nkeys + (len(broker.keys.priorities) if keys_var else 0), name
        assert len(call.args) >= nargv, name
        if not argv_var:
            assert len(call.args) == nargv, name


def test_all_keys_of_a_queue_share_one_hash_slot(broker: Broker) -> None:
    k = broker.keys
    every = [*k.pending_all(), k.job("x"), k.active, k.scheduled, k.dead, k.completed, k.stats, k.seq, k.wake]
    every += [k.workers, k.worker("w"), k.rate_limit]
    assert all("{test}" in key for key in every)
