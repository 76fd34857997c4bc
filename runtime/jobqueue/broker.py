"""Typed access to the queue's Redis state: one method per Lua script, plus the read API.

Each transition also exists as a ``*_call`` returning an unexecuted ``Call`` so the worker can
send several transitions (acks, retries, the next claim) in one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

from jobqueue.clock import SYSTEM_CLOCK, Clock
from jobqueue.errors import SCRIPT_ERRORS, JobQueueError
from jobqueue.job import ClaimedJob
from jobqueue.keys import QueueKeys
from jobqueue.scripts import load_script

T = TypeVar("T")

WAKE_CAP = 64
"""Most wake-up tokens kept: enough to wake every idle process of a large fleet at once."""


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _bools(raw: Any) -> list[bool]:
    return [int(x) == 1 for x in raw]


def _strs(raw: Any) -> list[str]:
    return [_s(x) for x in raw]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One script invocation, not yet sent."""

    script: str
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], T]


@dataclass(frozen=True)
class EnqueueItem:
    id: str
    priority: str
    data: bytes
    due_ms: int = 0
    max_retries: int = 3


@dataclass(frozen=True)
class ReapResult:
    requeued: list[str]
    dead: list[str]


@dataclass(frozen=True)
class PriorityStats:
    name: str
    pending: int
    oldest_ready_ms: int | None


@dataclass(frozen=True)
class QueueStats:
    """Queue-wide figures read in one round trip (admin, metrics, operator autoscaling)."""

    queue: str
    now_ms: int
    priorities: list[PriorityStats]
    in_flight: int
    scheduled: int
    scheduled_due: int
    dead: int
    live_workers: int
    completed_kept: int
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return sum(p.pending for p in self.priorities)

    @property
    def oldest_age_s(self) -> float:
        ages = [(self.now_ms - p.oldest_ready_ms) / 1000 for p in self.priorities if p.oldest_ready_ms]
        return max([0.0, *ages])

    def backlog(self, count_in_flight: bool = True, count_delayed_due: bool = True) -> int:
        """Work that needs a worker: pending, plus in flight and due retries when asked."""
        return (
            self.pending + (self.in_flight if count_in_flight else 0) + (self.scheduled_due if count_delayed_due else 0)
        )


class Broker:
    """The queue's state machine in Redis. The client must be created with decode_responses=False."""

    def __init__(self, redis: Redis, keys: QueueKeys, clock: Clock = SYSTEM_CLOCK) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self._names = list(keys.priorities)
        self._pending = keys.pending_all()

    # ------------------------------------------------------------------ running calls

    async def run(self, call: Call[T], conn: Connection | None = None) -> T:
        (result,) = await self.run_many([call], conn)
        return result  # type: ignore[no-any-return]

    async def run_many(self, calls: Sequence[Call[Any]], conn: Connection | None = None) -> list[Any]:
        """Send calls in one pipeline (no MULTI); reload scripts Redis forgot and re-send only those.

        ``conn``: a connection the caller holds for itself (one send at a time on it) instead of
        one checked out of the pool per send; it is disconnected, never left half-read, on failure.
        """
        if not calls:
            return []
        results = await self._send(calls, conn)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for name in {calls[i].script for i in missing}:
                await self.redis.script_load(load_script(name).source)
            retried = await self._send([calls[i] for i in missing], conn)
            for i, r in zip(missing, retried, strict=True):
                results[i] = r
        out = []
        for call, r in zip(calls, results, strict=True):
            if isinstance(r, Exception):
                raise _map_error(r)
            out.append(call.parse(r))
        return out

    async def _send(self, calls: Sequence[Call[Any]], held: Connection | None = None) -> list[Any]:
        """The calls' EVALSHAs written in one go on one pooled connection, then their replies read.

        Not redis-py's ``Pipeline``: its per-command objects, callbacks and reset cost about a fifth
        of a worker's CPU with short jobs. Connection errors are retried with the client's retry
        policy, as redis-py does for commands and pipelines; a script's error reply is returned in
        its place, as ``execute(raise_on_error=False)`` did.
        """
        pool = self.redis.connection_pool
        conn = held or await pool.get_connection()  # type: ignore[no-untyped-call]
        packed = conn.pack_commands(
            [("EVALSHA", load_script(c.script).sha, len(c.keys), *c.keys, *c.args) for c in calls]
        )

        async def attempt() -> list[Any]:
            await conn.send_packed_command(packed)
            results: list[Any] = []
            for _ in calls:
                try:
                    results.append(await conn.read_response())
                except ResponseError as err:
                    results.append(err)
            return results

        async def failed(_: Exception) -> None:
            await conn.disconnect()

        try:
            return await conn.retry.call_with_retry(attempt, failed)
        except BaseException:
            await conn.disconnect()  # replies may be left unread: the connection is not reusable
            raise
        finally:
            if held is None:
                await pool.release(conn)

    # ------------------------------------------------------------------ transitions

    def enqueue_call(self, items: Sequence[EnqueueItem]) -> Call[list[bool]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms(), WAKE_CAP, k.events_channel, len(self._names), *self._names]
        index = {name: i + 1 for i, name in enumerate(self._names)}
        for it in items:
            args += [it.id, index[it.priority], it.due_ms, it.max_retries, it.data]
        keys = [k.job_prefix, k.scheduled, k.wake, k.idle, k.idle_slots, k.handoff_prefix, k.active, k.seq]
        return Call("enqueue", [*keys, *self._pending], args, _bools)

    async def enqueue(self, items: Sequence[EnqueueItem]) -> list[bool]:
        """Add jobs; False for an id that already exists (idempotent)."""
        return await self.run(self.enqueue_call(items))

    def claim_call(
        self, n: int, lease_ms: int, worker_id: str, idle_ttl_ms: int = 0, idle_slots: int | None = None
    ) -> Call[list[ClaimedJob]]:
        k = self.keys
        offer = n if idle_slots is None else idle_slots
        return Call(
            "claim",
            [k.job_prefix, k.active, k.seq, k.wake, k.idle, k.idle_slots, k.handoff(worker_id), *self._pending],
            [self.clock.now_ms(), lease_ms, n, worker_id, WAKE_CAP, idle_ttl_ms, offer, *self._names],
            _parse_claimed,
        )

    async def claim(
        self, n: int, lease_ms: int, worker_id: str, idle_ttl_ms: int = 0, idle_slots: int | None = None
    ) -> list[ClaimedJob]:
        """Jobs handed to this worker, then up to n pending ones. With idle_ttl_ms > 0, when the queue
        ran dry and fewer than idle_slots (default n: free run slots) were found, the worker is
        registered for direct handoff of the rest until then (see enqueue.lua)."""
        return await self.run(self.claim_call(n, lease_ms, worker_id, idle_ttl_ms, idle_slots))

    def promote_call(self, limit: int = 1000) -> Call[tuple[int, int | None]]:
        k = self.keys
        return Call(
            "promote",
            [k.job_prefix, k.scheduled, k.wake, *self._pending],
            [self.clock.now_ms(), limit, WAKE_CAP, *self._names],
            lambda r: (int(r[0]), None if int(r[1]) < 0 else int(r[1])),
        )

    async def promote(self, limit: int = 1000) -> tuple[int, int | None]:
        """Move due scheduled jobs to pending; returns (moved, next due ms or None)."""
        return await self.run(self.promote_call(limit))

    def extend_lease_call(self, worker_id: str, lease_ms: int, held: Sequence[tuple[str, str]]) -> Call[list[str]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms(), lease_ms, worker_id]
        for job_id, token in held:
            args += [job_id, token]
        return Call("extend_lease", [k.job_prefix, k.active, k.workers, k.worker(worker_id)], args, _strs)

    async def extend_lease(self, worker_id: str, lease_ms: int, held: Sequence[tuple[str, str]]) -> list[str]:
        """Heartbeat: renew leases and registration; returns ids whose lease was lost."""
        return await self.run(self.extend_lease_call(worker_id, lease_ms, held))

    def ack_call(self, items: Sequence[tuple[str, str, int]], keep: int, remember_ms: int = 0) -> Call[list[bool]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms(), keep, remember_ms]
        for job_id, token, duration_ms in items:
            args += [job_id, token, duration_ms]
        return Call("ack", [k.job_prefix, k.active, k.completed, k.stats], args, _bools)

    async def ack(self, items: Sequence[tuple[str, str, int]], keep: int = 1000, remember_ms: int = 0) -> list[bool]:
        """(id, token, run ms) -> completed; False where the lease was lost."""
        return await self.run(self.ack_call(items, keep, remember_ms))

    def retry_call(self, items: Sequence[tuple[str, str, int, str]]) -> Call[list[bool]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms()]
        for job_id, token, due_ms, error in items:
            args += [job_id, token, due_ms, error]
        return Call("retry", [k.job_prefix, k.active, k.scheduled, k.stats], args, _bools)

    async def retry(self, items: Sequence[tuple[str, str, int, str]]) -> list[bool]:
        """(id, token, due ms, error) -> scheduled for another attempt."""
        return await self.run(self.retry_call(items))

    def bury_call(self, items: Sequence[tuple[str, str, str, str, bool]]) -> Call[list[bool]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms()]
        for job_id, token, reason, error, count in items:
            args += [job_id, token, reason, error, 1 if count else 0]
        return Call("bury", [k.job_prefix, k.active, k.dead, k.stats], args, _bools)

    async def bury(self, items: Sequence[tuple[str, str, str, str, bool]]) -> list[bool]:
        """(id, token, reason, error, count attempt) -> dead-letter queue."""
        return await self.run(self.bury_call(items))

    def release_call(self, items: Sequence[tuple[str, str]]) -> Call[list[bool]]:
        k = self.keys
        args: list[Any] = [self.clock.now_ms(), WAKE_CAP, len(self._names), *self._names]
        for job_id, token in items:
            args += [job_id, token]
        return Call("release", [k.job_prefix, k.active, k.wake, *self._pending], args, _bools)

    async def release(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """(id, token) -> back to the head of its queue, attempt not counted."""
        return await self.run(self.release_call(items))

    async def reap(self, limit: int = 1000) -> ReapResult:
        k = self.keys
        raw = await self.run(
            Call(
                "reap",
                [
                    *(k.job_prefix, k.active, k.dead, k.stats, k.workers, k.wake),
                    *(k.idle, k.idle_slots, k.handoff_prefix, *self._pending),
                ],
                [self.clock.now_ms(), limit, WAKE_CAP, *self._names],
                lambda r: r,
            )
        )
        return ReapResult(requeued=_strs(raw[0]), dead=_strs(raw[1]))

    async def register_worker(self, worker_id: str, ttl_ms: int, info: dict[str, str | int]) -> None:
        k = self.keys
        args: list[Any] = [self.clock.now_ms(), ttl_ms, worker_id]
        for key, value in info.items():
            args += [key, value]
        await self.run(Call("register_worker", [k.workers, k.worker(worker_id)], args, lambda r: r))

    async def unregister_worker(self, worker_id: str) -> bool:
        k = self.keys
        return await self.run(
            Call(
                "unregister_worker",
                [k.workers, k.worker(worker_id), k.idle, k.idle_slots, k.handoff(worker_id)],
                [worker_id],
                lambda r: int(r) == 1,
            )
        )

    async def rate_limit(self, limit: int, window_ms: int, n: int = 1) -> int:
        """Take n permits; 0 when granted, else ms to wait for the next window."""
        return await self.run(Call("rate_limit", [self.keys.rate_limit], [limit, window_ms, n], int))

    async def purge_dlq(self, job_id: str | None = None, batch: int = 1000) -> int:
        """Delete dead jobs (all, or one id), in batches; returns how many."""
        k = self.keys
        total = 0
        while True:
            n = await self.run(Call("purge_dlq", [k.job_prefix, k.dead], [batch, job_id or ""], int))
            total += n
            if job_id is not None or n == 0:
                return total

    async def requeue_dlq(self, job_id: str | None = None, n: int = 1000) -> list[str]:
        """Move dead jobs (one id, or the oldest n) back to their queue with attempts reset."""
        k = self.keys
        return await self.run(
            Call(
                "requeue_dlq",
                [k.job_prefix, k.dead, k.wake, *self._pending],
                [self.clock.now_ms(), WAKE_CAP, n, job_id or "", *self._names],
                _strs,
            )
        )

    async def queue_stats(self) -> QueueStats:
        k = self.keys
        now = self.clock.now_ms()
        raw = await self.run(
            Call(
                "queue_stats",
                [k.job_prefix, k.active, k.scheduled, k.dead, k.workers, k.stats, k.completed, *self._pending],
                [now],
                lambda r: r,
            )
        )
        per = [
            PriorityStats(name, int(p[0]), None if int(p[1]) < 0 else int(p[1]))
            for name, p in zip(self._names, raw[0], strict=True)
        ]
        flat = raw[7]
        counters = {_s(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return QueueStats(
            queue=k.queue,
            now_ms=now,
            priorities=per,
            in_flight=int(raw[1]),
            scheduled=int(raw[2]),
            scheduled_due=int(raw[3]),
            dead=int(raw[4]),
            live_workers=int(raw[5]),
            completed_kept=int(raw[6]),
            counters=counters,
        )

    # ------------------------------------------------------------------ reads

    async def wait_for_work(self, client: Redis, worker_id: str, timeout_s: float) -> ClaimedJob | bool:
        """Block (on a dedicated connection) until a job is handed to this worker (returned, leased),
        a wake-up token arrives (True) or the timeout passes (False)."""
        handoff = self.keys.handoff(worker_id)
        got = await client.blpop([handoff, self.keys.wake], timeout=max(timeout_s, 0.001))
        if got is None:
            return False
        key, value = got
        if _s(key) != handoff:
            return True
        return parse_handoff(value if isinstance(value, bytes) else value.encode())

    async def get_job(self, job_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        return {_s(key): _s(v) for key, v in raw.items()}

    async def get_jobs(self, ids: Sequence[str]) -> list[dict[str, str] | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            raws = await pipe.execute()
        return [{_s(key): _s(v) for key, v in r.items()} if r else None for r in raws]

    async def peek_ids(self, where: str, n: int) -> list[str]:
        """Next n ids of a priority's pending list (claim order), or of 'scheduled', 'dead', 'active'."""
        k = self.keys
        if where in self._names:
            return _strs(await self.redis.lrange(k.pending(where), -n, -1))[::-1]
        zkey = {"scheduled": k.scheduled, "dead": k.dead, "active": k.active}.get(where)
        if zkey is None:
            raise JobQueueError(f"unknown queue {where!r}; use one of {[*self._names, 'scheduled', 'dead']}")
        return _strs(await self.redis.zrange(zkey, 0, n - 1))

    async def recent_completed(self, n: int) -> list[str]:
        return _strs(await self.redis.lrange(self.keys.completed, 0, n - 1))

    async def job_field(self, ids: Sequence[str], name: str) -> list[str | None]:
        """One field of several job hashes (pipelined HGET); None where the job or field is gone."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(self.keys.job(job_id), name)
            raws = await pipe.execute()
        return [None if r is None else _s(r) for r in raws]

    async def list_workers(self) -> list[tuple[str, int, dict[str, str]]]:
        """Registered workers (id, registration expiry ms, description), expired ones included."""
        k = self.keys
        entries: Any = await self.redis.zrange(k.workers, 0, -1, withscores=True)
        if not entries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid, _ in entries:
                pipe.hgetall(k.worker(_s(wid)))
            infos = await pipe.execute()
        return [
            (_s(wid), int(score), {_s(a): _s(b) for a, b in info.items()})
            for (wid, score), info in zip(entries, infos, strict=True)
        ]

    async def active_jobs(self, limit: int = 10_000) -> list[tuple[str, int, dict[str, str]]]:
        """Jobs leased now (id, lease deadline ms, worker/prio/started_ms/attempts), soonest deadline first."""
        entries: Any = await self.redis.zrange(self.keys.active, 0, limit - 1, withscores=True)
        if not entries:
            return []
        fields = ("worker", "prio", "started_ms", "attempts")
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, _ in entries:
                pipe.hmget(self.keys.job(_s(job_id)), fields)
            rows = await pipe.execute()
        return [
            (_s(job_id), int(score), {f: _s(v) for f, v in zip(fields, row, strict=True) if v is not None})
            for (job_id, score), row in zip(entries, rows, strict=True)
        ]


def _parse_claimed(raw: Any) -> list[ClaimedJob]:
    out = []
    for i in range(0, len(raw), 7):
        out.append(
            ClaimedJob(
                id=_s(raw[i]),
                token=_s(raw[i + 1]),
                priority=_s(raw[i + 2]),
                attempts=int(raw[i + 3] or 0),
                ready_ms=int(raw[i + 4] or 0),
                raw=raw[i + 5] if isinstance(raw[i + 5], bytes) else str(raw[i + 5]).encode(),
                is_raw_entry=raw[i + 6] in (b"raw", "raw"),
            )
        )
    return out


def parse_handoff(entry: bytes) -> ClaimedJob:
    """A handoff list entry (enqueue.lua): token, id, priority, attempts, ready ms, job JSON."""
    token, job_id, priority, attempts, ready_ms, raw = entry.split(b"\x1f", 5)
    return ClaimedJob(
        id=job_id.decode(),
        token=token.decode(),
        priority=priority.decode(),
        attempts=int(attempts),
        ready_ms=int(ready_ms),
        raw=raw,
        is_raw_entry=False,
    )


def _map_error(err: Exception) -> Exception:
    text = str(err)
    for code, exc in SCRIPT_ERRORS.items():
        if code in text:
            return exc(text)
    return err
