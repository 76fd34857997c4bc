"""The worker role: claims jobs, runs their handlers, records outcomes, renews leases.

One dispatcher loop per process does all queue I/O: each round trip carries the outcomes of the
jobs that finished since the last one (ack / retry / bury, batched per script) together with the
next claim for the free slots, in one pipeline. When the queue is dry it blocks on the wake list
(a dedicated connection), so an idle worker neither polls Redis nor waits for a timeout.
Jobs run in worker.count long-lived slot tasks (``_slot_loop``), not a task per job.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import secrets
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobqueue import __version__
from jobqueue.backoff import compute_backoff
from jobqueue.breaker import BreakerState, CircuitBreaker
from jobqueue.broker import Broker, Call
from jobqueue.clock import SYSTEM_CLOCK, Clock
from jobqueue.config import Config
from jobqueue.errors import PermanentJobError, RetryJob
from jobqueue.handlers import (
    Handler,
    HandlerRegistry,
    default_registry,
    import_handler,
    import_modules,
    is_async,
)
from jobqueue.job import ClaimedJob, Job
from jobqueue.keys import QueueKeys
from jobqueue.metrics import Metrics
from jobqueue.redis_conn import make_client
from jobqueue.tracing import for_config, log_fields

log = logging.getLogger("jobqueue.worker")

PROMOTE_INTERVAL_S = 0.5
"""Longest a due retry waits to be promoted when this process did not schedule it itself."""
WAKE_WAIT_S = 1.0
"""Longest single BLPOP on the wake list (bounds how stale an idle worker's view can get)."""
IDLE_TTL_MS = 3_000
"""How long an idle registration (direct handoff) lives unless the worker claims again, which an
idle worker does every PROMOTE_INTERVAL_S: a worker killed while idle gets new jobs handed to it
for at most this long (they are leased, so the reaper recovers them when their lease expires)."""


SLOT_BURST = 32
"""Most jobs a slot runs back to back without letting the event loop turn (see _slot_loop)."""


def new_worker_id() -> str:
    """host-pid-random: unique across restarts of a container that reuses the pid."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class _Running:
    claimed: ClaimedJob
    task: asyncio.Task[None] | None
    probe: bool
    deadline: float = math.inf  # time.monotonic() after which the watchdog cancels the job
    lost: bool = False
    timed_out: bool = False


@dataclass(slots=True)
class _Outcome:
    kind: Literal["ack", "retry", "bury"]
    claimed: ClaimedJob
    duration_ms: int = 0
    due_ms: int = 0
    reason: str = ""
    error: str = ""
    failed: bool = False
    elapsed_s: float = 0.0
    span: Any = None
    trace_context: dict[str, str] | None = None
    resent: bool = False  # an earlier send failed mid-way: Redis may already have taken it


class Worker:
    """A worker process's job engine: ``await Worker(cfg).run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        redis: Redis | None = None,
        blocking_redis: Redis | None = None,
        registry: HandlerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
        tracer: Any = None,
    ) -> None:
        w = config.worker
        self.cfg = config
        self.keys = QueueKeys(config.queue_name, tuple(w.priorities))
        self._own_redis = redis is None
        self.redis = redis or make_client(config.redis)
        self._own_blocking = blocking_redis is None
        self.blocking = blocking_redis or make_client(config.redis, blocking=True)
        self.clock = clock
        self.broker = Broker(self.redis, self.keys, clock)
        import_modules(w.handler_modules)
        self.registry = registry or default_registry
        self.default_handler: Handler = import_handler(w.handler)
        self.worker_id = worker_id or new_worker_id()
        self.lease_ms = int(w.heartbeat_ttl.total_seconds() * 1000)
        self.metrics = metrics or Metrics()
        self.metrics.preset(w.priorities, ("dispatch", "wake", "extend_lease"))
        self.metrics.worker_active.set_function(lambda: len(self.running))  # read at scrape, free per job
        self.tracing = for_config(config.observability.tracing, tracer)
        self.breaker = CircuitBreaker(config.circuit_breaker, clock, on_change=self._breaker_changed)
        self.running: dict[str, _Running] = {}
        self.draining = False
        self._outcomes: list[_Outcome] = []
        # Finished jobs whose outcome Redis has not yet taken (e.g. during an outage): their
        # leases are renewed like running ones, or the reaper would re-run completed work.
        self._unsettled: dict[str, str] = {}
        # Claimed ahead of free slots (worker.prefetch): leased, renewed, started as slots free up.
        self._buffer: deque[tuple[ClaimedJob, bool]] = deque()
        self._changed = asyncio.Event()
        self._hungry = asyncio.Event()
        self._next_due_ms: int | None = None
        self._last_promote = -math.inf
        self._executor = ThreadPoolExecutor(w.thread_pool_size or w.count, thread_name_prefix="jobqueue-job")
        self._job_timeout = w.job_timeout.total_seconds() or None
        self._remember_ms = int(w.completed_ttl.total_seconds() * 1000)
        self._idle_ttl_ms = IDLE_TTL_MS if w.handoff else 0
        self._idle_registered = False  # as of the last claim: enqueue may be handing us jobs
        self._watch_at = math.inf  # when the watchdog wakes next (time.monotonic())
        self._watch_kick = asyncio.Event()
        self._waker: asyncio.Task[None] | None = None  # the task blocked on the handoff/wake lists
        # Jobs run in worker.count long-lived slot tasks that take the next buffered job themselves
        # (no task per job); an idle slot waits on a future of its own here until _fill wakes it.
        self._idle_slots: deque[asyncio.Future[None]] = deque()
        self._async_cache: dict[int, bool] = {}  # by id(): handlers need not be hashable
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        info: dict[str, str | int] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_ms": self.clock.now_ms(),
            "concurrency": self.cfg.worker.count,
            "version": __version__,
        }
        if not await self._start_up(stop, info):
            await self._close_clients()
            log.info("worker stopped before Redis answered", extra={"worker_id": self.worker_id})
            return
        log.info(
            "worker started",
            extra={"worker_id": self.worker_id, "concurrency": self.cfg.worker.count, "queue": self.keys.queue},
        )
        self._waker = asyncio.create_task(self._waker_loop(), name="jobqueue-waker")
        helpers = [
            asyncio.create_task(self._slot_loop(), name=f"jobqueue-slot-{i}") for i in range(self.cfg.worker.count)
        ]
        helpers += [
            asyncio.create_task(self._heartbeat_loop(), name="jobqueue-heartbeat"),
            asyncio.create_task(self._stop_watch(stop), name="jobqueue-stop-watch"),
            asyncio.create_task(self._watchdog_loop(), name="jobqueue-job-timeouts"),
        ]
        try:
            await self._dispatch(stop)
            await asyncio.shield(self._drain())
        finally:
            if self._waker is not None:
                helpers.append(self._waker)  # the current one: a waker that ran a handed-off job handed over
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            try:
                await asyncio.shield(self.broker.unregister_worker(self.worker_id))
            except RedisError as err:
                log.warning("could not unregister worker", extra={"error": str(err)})
            await self._close_clients()
            log.info("worker stopped", extra={"worker_id": self.worker_id})

    async def _start_up(self, stop: asyncio.Event, info: dict[str, str | int]) -> bool:
        """Register and connect the wake-list client, retrying while Redis is away (it may vanish
        between the supervisor's reachability check and here); False if stopped first."""
        backoff = 0.05
        while not stop.is_set():
            try:
                await self.broker.register_worker(self.worker_id, self.lease_ms, info)
                # Connect the wake-list client now: a connect cancelled half-way at shutdown leaks its socket.
                await self.blocking.ping()
                return True
            except (RedisError, OSError) as err:
                self.metrics.redis_errors.labels("dispatch").inc()
                log.warning("redis error at start-up; retrying", extra={"error": str(err), "retry_in_s": backoff})
                try:
                    async with asyncio.timeout(backoff):
                        await stop.wait()
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 2.0)
        return False

    async def _close_clients(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_redis:
            await self.redis.aclose()
        if self._own_blocking:
            await self.blocking.aclose()

    async def _stop_watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.draining = True
        self._changed.set()

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, stop: asyncio.Event) -> None:
        backoff = 0.05
        while not stop.is_set():
            outcomes, self._outcomes = self._outcomes, []
            self._changed.clear()
            free = self.cfg.worker.count - len(self.running)
            want = free + self.cfg.worker.prefetch - len(self._buffer)
            allowed = self.breaker.allow(max(want, 0))
            probe = allowed > 0 and self.breaker.probing
            calls, apply = self._settle_calls(outcomes)
            promote = allowed > 0 and self._promote_due()
            if promote:
                calls.append(self.broker.promote_call())
            claiming = allowed > 0 or self._idle_registered
            idle_ttl = 0
            offer = max(min(free - len(self._buffer), allowed), 0)  # run slots: a handoff should start at once
            if claiming:
                # A probe must be a claimed job, so no handoff registration while probing; with no
                # free slot (allowed == 0) this call just takes handed-off jobs and deregisters.
                idle_ttl = 0 if probe or self.draining else self._idle_ttl_ms
                calls.append(self.broker.claim_call(allowed, self.lease_ms, self.worker_id, idle_ttl, offer))
            sent_ms = self.clock.now_ms()
            try:
                results = await self.broker.run_many(calls)
            except (RedisError, OSError) as err:
                for o in outcomes:
                    o.resent = True
                self._outcomes[:0] = outcomes  # keep them; re-sent results are refused harmlessly
                if probe:
                    self.breaker.probe_not_used()
                self.metrics.redis_errors.labels("dispatch").inc()
                log.warning("redis error in dispatch; retrying", extra={"error": str(err), "retry_in_s": backoff})
                await self._wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            apply(results)
            claimed: list[ClaimedJob] = results[-1] if claiming else []
            self._idle_registered = idle_ttl > 0 and len(claimed) < min(allowed, offer)
            if promote:
                self._last_promote = self.clock.monotonic()
                self._next_due_ms = results[-2][1]
            if probe and not claimed:
                self.breaker.probe_not_used()
            for cj in claimed:
                cj.lease_until_ms = sent_ms + self.lease_ms
            self._buffer.extend((cj, probe) for cj in claimed)
            self._fill()
            if (allowed > 0 and len(claimed) >= allowed) or self._outcomes:
                continue
            if allowed > 0:
                self._hungry.set()
            await self._wait(self._idle_timeout(allowed > 0))
            self._hungry.clear()

    def _promote_due(self) -> bool:
        if self.clock.monotonic() - self._last_promote >= PROMOTE_INTERVAL_S:
            return True
        return self._next_due_ms is not None and self.clock.now_ms() >= self._next_due_ms

    def _idle_timeout(self, hungry: bool) -> float:
        waits = [PROMOTE_INTERVAL_S]
        if hungry and self._next_due_ms is not None:
            waits.append(max((self._next_due_ms - self.clock.now_ms()) / 1000, 0.001))
        probe_in = self.breaker.seconds_until_probe()
        if probe_in is not None:
            waits.append(max(probe_in, 0.001))
        return min(waits)

    async def _wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    async def _waker_loop(self) -> None:
        """While the dispatcher is hungry, block on this worker's handoff list and the wake list:
        start a handed-off job at once (it is leased to us already), nudge the dispatcher on a token."""
        backoff = 0.05
        while True:
            _reraise_if_cancelled()
            await self._hungry.wait()
            try:
                got = await self.broker.wait_for_work(self.blocking, self.worker_id, WAKE_WAIT_S)
                if isinstance(got, ClaimedJob):
                    start = await self._handed_off(got)
                    if start is not None:
                        # Idle pickup: run the job in this task, at once (a task of its own would
                        # wait a loop turn, and re-arming the BLPOP first costs more than the
                        # job's start); a new waker takes over the waiting.
                        self._waker = asyncio.create_task(self._waker_loop(), name="jobqueue-waker")
                        start[0].task = asyncio.current_task()
                        await self._execute(*start)
                        return
                    continue
                if got and not self._hungry.is_set():
                    # Woken after we found work elsewhere: pass the token on to another worker.
                    await self.redis.lpush(self.keys.wake, "1")
                backoff = 0.05
            except (RedisError, OSError) as err:
                self.metrics.redis_errors.labels("wake").inc()
                log.debug("wake wait failed", extra={"error": str(err)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                got = True  # let the dispatcher retry on its own schedule
            if got:
                self._changed.set()

    async def _handed_off(self, cj: ClaimedJob) -> tuple[_Running, Job, Handler] | None:
        """Take a handed-off job: what to run in the calling task now, if a slot is free and no
        buffered job is ahead of it; else it is queued behind them (or released when stopping)."""
        cj.lease_until_ms = cj.ready_ms + self.lease_ms  # enqueue leased it at ready_ms
        if not self.draining:
            if not self._buffer and len(self.running) < self.cfg.worker.count:
                return self._prepare(cj, False)
            self._buffer.append((cj, False))
            self._fill()
            return None
        try:  # arrived as we stopped claiming: straight back to the queue
            await self.broker.release([(cj.id, cj.token)])
        except (RedisError, OSError) as err:
            log.warning("could not requeue a handed-off job; the reaper will", extra={"error": str(err)})
        return None

    # ------------------------------------------------------------------ running jobs

    async def _slot_loop(self) -> None:
        """Run buffered jobs one after another; wait (on a future of its own) when none can start.

        A task per job cost a task creation and a loop turn each (~15% of a worker's throughput
        with short jobs). A slot runs up to SLOT_BURST jobs back to back when their handlers do
        not suspend, then lets the loop turn once, so the dispatcher's replies and the heartbeat
        are never kept waiting long. It ends when the worker drains."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        burst = 0
        while True:
            start = self._next_start()
            if start is None:
                if self.draining:
                    return
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle_slots.append(waiter)
                await waiter
                burst = 0
                continue
            running, job, handler = start
            running.task = task
            await self._execute(running, job, handler)
            if running.timed_out:
                while task.cancelling():  # a handler that swallowed the timeout's cancel
                    task.uncancel()
            burst += 1
            if burst >= SLOT_BURST:
                burst = 0
                await asyncio.sleep(0)

    def _next_start(self) -> tuple[_Running, Job, Handler] | None:
        """The next buffered job to run, decoded and registered; None if none can start now."""
        count = self.cfg.worker.count
        while self._buffer and len(self.running) < count and not self.draining:
            cj, probe = self._buffer.popleft()
            start = self._prepare(cj, probe)
            if start is not None:
                return start
        return None

    def _prepare(self, cj: ClaimedJob, probe: bool) -> tuple[_Running, Job, Handler] | None:
        """Decode and register a job as running; None when it is not to run here (dead-lettered
        as malformed or without a handler, or its lease ran out)."""
        qm = self.metrics.queue(cj.priority)
        now_ms = self.clock.now_ms()
        if cj.lease_until_ms and now_ms >= cj.lease_until_ms:
            # Received or buffered across a pause longer than the lease (a frozen process, a long
            # cut): the reaper may have given the job to another worker already. Not ours to run.
            qm.lease_lost.inc()
            log.warning(
                "lease ran out before the job started; leaving it to the reaper",
                extra={"job_id": cj.id, "queue": cj.priority, "worker_id": self.worker_id},
            )
            return None
        qm.consumed.inc()
        qm.wait.observe(max(now_ms - cj.ready_ms, 0) / 1000)
        try:
            job = Job.model_validate_json(cj.raw)
        except ValidationError as err:
            reason = "malformed payload"
            self._bury_now(cj, reason, _summarise(err, cj.raw))
            return None
        # The job was just built here and is not shared yet: set the record's view of it in place
        # (model_copy would cost a copy per job on the hot path).
        job.__dict__.update(id=cj.id, retries=cj.attempts, priority=cj.priority)
        handler = self.registry.get(job.type) if job.type else self.default_handler
        if handler is None:
            self._bury_now(cj, "no handler", f"no handler registered for job type {job.type!r}")
            return None
        running = _Running(cj, None, probe)
        self.running[cj.id] = running
        return running, job, handler

    def _bury_now(self, cj: ClaimedJob, reason: str, error: str) -> None:
        log.warning(
            reason,
            extra={"job_id": cj.id, "queue": cj.priority, "attempt": cj.attempts + 1, "error": error},
        )
        self._unsettled[cj.id] = cj.token
        self._outcomes.append(_Outcome("bury", cj, reason=reason, error=error))
        self._changed.set()

    async def _execute(self, running: _Running, job: Job, handler: Handler) -> None:
        cj = running.claimed
        timeout = job.timeout_s or self._job_timeout
        if timeout:  # set here, once the task runs: a task cancelled before its first step never gets to `try`
            running.deadline = deadline = time.monotonic() + timeout
            if deadline < self._watch_at:
                self._watch_kick.set()
        span: Any = None
        started = time.perf_counter()
        outcome: _Outcome
        loop = asyncio.get_running_loop()
        try:
            with self._span(cj, job) as span:
                if self._is_async(handler):
                    await handler(job)
                else:
                    # The copied context carries the current span into the handler's thread.
                    run = contextvars.copy_context().run
                    await loop.run_in_executor(self._executor, run, handler, job)
        except asyncio.CancelledError:
            if not running.timed_out:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = self._failure(cj, job, f"timed out after {timeout:g}s", None)
        except RetryJob as r:
            outcome = self._failure(cj, job, f"retry requested: {r}", r.delay_s)
        except PermanentJobError as err:
            outcome = _Outcome("bury", cj, reason="permanent error", error=_err_text(err))
        except Exception as err:  # a handler's failure, whatever it is, is the job's outcome
            outcome = self._failure(cj, job, _err_text(err), None)
        else:
            outcome = _Outcome("ack", cj)
        elapsed = time.perf_counter() - started
        outcome.duration_ms = int(elapsed * 1000)
        outcome.elapsed_s = elapsed
        outcome.span = span
        outcome.trace_context = job.trace_context
        self.metrics.queue(cj.priority).processing.observe(elapsed)
        if outcome.kind == "ack":
            self.breaker.record(True, running.probe)
        elif outcome.failed:
            self.breaker.record(False, running.probe)
        elif running.probe:
            self.breaker.probe_not_used()
        del self.running[cj.id]
        self._unsettled[cj.id] = cj.token
        self._outcomes.append(outcome)
        self._changed.set()
        if self._buffer and not self.draining:
            self._fill()

    async def _watchdog_loop(self) -> None:
        """Cancel jobs past their deadline. One task for all jobs, not a timer per job: a per-job
        asyncio.timeout() (or loop timer) cost about a tenth of a short job's overhead. It sleeps
        until the earliest deadline; a job starting with an earlier one wakes it."""
        while True:
            now = time.monotonic()
            earliest = math.inf
            for r in list(self.running.values()):
                if r.deadline <= now:
                    if not r.timed_out and r.task is not None and not r.task.done():
                        r.timed_out = True
                        r.task.cancel()
                elif r.deadline < earliest:
                    earliest = r.deadline
            self._watch_at = earliest
            self._watch_kick.clear()
            try:
                async with asyncio.timeout(None if earliest == math.inf else max(earliest - now, 0.001)):
                    await self._watch_kick.wait()
            except TimeoutError:
                pass

    def _fill(self) -> None:
        """Wake idle slots for the buffered jobs (no round trip needed); each takes its own."""
        n = min(len(self._buffer), self.cfg.worker.count - len(self.running))
        while n > 0 and self._idle_slots:
            waiter = self._idle_slots.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def _is_async(self, handler: Handler) -> bool:
        known = self._async_cache.get(id(handler))
        if known is None:
            known = self._async_cache[id(handler)] = is_async(handler)
        return known

    def _span(self, cj: ClaimedJob, job: Job) -> AbstractContextManager[Any]:
        if self.tracing is None:
            return nullcontext()
        return self.tracing.process(self.keys.queue, cj.id, cj.priority, cj.attempts + 1, job.trace_context)

    def _failure(self, cj: ClaimedJob, job: Job, error: str, delay_s: float | None) -> _Outcome:
        w = self.cfg.worker
        max_retries = job.max_retries if job.max_retries is not None else w.max_retries
        attempt = cj.attempts + 1
        if attempt > max_retries:
            return _Outcome("bury", cj, reason="max retries exceeded", error=error, failed=True)
        if delay_s is None:
            b = w.backoff
            delay_s = compute_backoff(attempt, b.base.total_seconds(), b.max.total_seconds(), b.jitter)
        return _Outcome("retry", cj, due_ms=self.clock.now_ms() + int(delay_s * 1000), error=error, failed=True)

    # ------------------------------------------------------------------ recording outcomes

    def _settle_calls(self, outcomes: list[_Outcome]) -> tuple[list[Call[Any]], Any]:
        """Batch outcomes into one call per script; returns the calls and a function to apply results."""
        acks = [o for o in outcomes if o.kind == "ack"]
        retries = [o for o in outcomes if o.kind == "retry"]
        buries = [o for o in outcomes if o.kind == "bury"]
        calls: list[Call[Any]] = []
        groups: list[list[_Outcome]] = []
        if acks:
            calls.append(
                self.broker.ack_call(
                    [(o.claimed.id, o.claimed.token, o.duration_ms) for o in acks],
                    self.cfg.worker.completed_keep,
                    self._remember_ms,
                )
            )
            groups.append(acks)
        if retries:
            calls.append(self.broker.retry_call([(o.claimed.id, o.claimed.token, o.due_ms, o.error) for o in retries]))
            groups.append(retries)
            first_due = min(o.due_ms for o in retries)
            self._next_due_ms = first_due if self._next_due_ms is None else min(self._next_due_ms, first_due)
        if buries:
            calls.append(
                self.broker.bury_call([(o.claimed.id, o.claimed.token, o.reason, o.error, True) for o in buries])
            )
            groups.append(buries)

        def apply(results: list[Any]) -> None:
            for group, oks in zip(groups, results, strict=False):
                for outcome, ok in zip(group, oks, strict=True):
                    self._recorded(outcome, ok)

        return calls, apply

    def _recorded(self, o: _Outcome, ok: bool) -> None:
        self._unsettled.pop(o.claimed.id, None)
        qm = self.metrics.queue(o.claimed.priority)
        if o.kind != "ack":
            qm.failed.inc()  # every attempt that did not succeed: retried or dead-lettered
        if not ok:
            qm.lease_lost.inc()
            if o.resent:
                # The first send may have landed before the connection dropped; we cannot tell.
                log.info(
                    "result refused on re-send: recorded before the connection dropped, or the lease was taken over",
                    extra={**self._fields(o), "outcome": o.kind},
                )
            else:
                log.warning("result refused: lease was taken over", extra={**self._fields(o), "outcome": o.kind})
        elif o.kind == "ack":
            qm.completed.inc()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job completed", extra=self._fields(o))
        elif o.kind == "retry":
            qm.retried.inc()
            log.info("job failed, will retry", extra={**self._fields(o), "error": o.error, "due_ms": o.due_ms})
        else:
            qm.dead_letter.inc()
            log.warning("job dead-lettered", extra={**self._fields(o), "reason": o.reason, "error": o.error})

    def _fields(self, o: _Outcome) -> dict[str, Any]:
        """The fields of a job event's log line."""
        cj = o.claimed
        return {
            "job_id": cj.id,
            "queue": cj.priority,
            "attempt": cj.attempts + 1,
            "worker_id": self.worker_id,
            "duration_s": round(o.elapsed_s, 6),
            **log_fields(o.span, o.trace_context),
        }

    async def _flush(self) -> None:
        """Record pending outcomes now (no claim); retried until Redis takes them or we give up."""
        for delay in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
            outcomes, self._outcomes = self._outcomes, []
            calls, apply = self._settle_calls(outcomes)
            if not calls:
                return
            try:
                apply(await self.broker.run_many(calls))
                return
            except (RedisError, OSError) as err:
                for o in outcomes:
                    o.resent = True
                self._outcomes[:0] = outcomes
                log.warning("could not record outcomes yet", extra={"error": str(err)})
                await asyncio.sleep(delay)
        log.error("giving up recording outcomes; their leases will expire and the reaper will retry them")

    # ------------------------------------------------------------------ leases

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_ms / 3000
        while True:
            _reraise_if_cancelled()
            await asyncio.sleep(interval)
            held = [(job_id, r.claimed.token) for job_id, r in self.running.items()]
            buffered = [cj for cj, _ in self._buffer]
            held += [(cj.id, cj.token) for cj in buffered]
            held += list(self._unsettled.items())
            sent_ms = self.clock.now_ms()
            try:
                lost = await self.broker.extend_lease(self.worker_id, self.lease_ms, held)
            except (RedisError, OSError) as err:
                self.metrics.redis_errors.labels("extend_lease").inc()
                log.warning("could not renew leases", extra={"error": str(err), "jobs": len(held)})
                continue
            gone = set(lost)
            for cj in buffered:
                if cj.id not in gone:
                    cj.lease_until_ms = sent_ms + self.lease_ms
            for job_id in lost:
                r = self.running.get(job_id)
                if r is not None and not r.lost:
                    r.lost = True
                    log.warning(
                        "lease lost while running; its result will be refused",
                        extra={"job_id": job_id, "queue": r.claimed.priority},
                    )

    # ------------------------------------------------------------------ shutdown

    async def _drain(self) -> None:
        """Stop claiming; let running jobs finish within shutdown_timeout, then requeue the rest."""
        self.draining = True
        deadline = time.monotonic() + self.cfg.worker.shutdown_timeout.total_seconds()
        if self._idle_registered:  # leave the idle registry (no more handoffs); take the ones already made
            try:
                self._buffer.extend((cj, False) for cj in await self.broker.claim(0, self.lease_ms, self.worker_id))
                self._idle_registered = False
            except (RedisError, OSError) as err:
                log.warning("could not leave the idle registry", extra={"error": str(err)})
        if self._buffer:  # prefetched, never started: straight back to the head, in their order
            buffered = [(cj.id, cj.token) for cj, _ in reversed(self._buffer)]
            self._buffer.clear()
            try:
                await self.broker.release(buffered)
            except (RedisError, OSError) as err:
                log.error("could not requeue prefetched jobs; the reaper will", extra={"error": str(err)})
        if self.running:
            log.info("draining", extra={"running": len(self.running), "timeout_s": deadline - time.monotonic()})
        while self.running and time.monotonic() < deadline:
            self._changed.clear()
            await self._flush()
            if self.running:
                await self._wait(max(deadline - time.monotonic(), 0.0))
        await self._flush()
        left = list(self.running.values())
        if left:
            for r in left:
                if r.task is not None:
                    r.task.cancel()
            await asyncio.gather(*(r.task for r in left if r.task is not None), return_exceptions=True)
            await self._flush()  # a job may have finished just as it was cancelled
            left = [r for r in left if r.claimed.id in self.running]
            try:
                done = await self.broker.release([(r.claimed.id, r.claimed.token) for r in left])
                log.info(
                    "requeued unfinished jobs", extra={"requeued": sum(done), "job_ids": [r.claimed.id for r in left]}
                )
            except (RedisError, OSError) as err:
                log.error("could not requeue unfinished jobs; the reaper will", extra={"error": str(err)})
            for r in left:
                self.running.pop(r.claimed.id, None)

    def _breaker_changed(self, old: BreakerState, new: BreakerState, why: str) -> None:
        self.metrics.circuit_breaker_state.set(int(new))
        if new is BreakerState.OPEN and old is BreakerState.CLOSED:
            self.metrics.circuit_breaker_trips.inc()
        log.warning(
            "circuit breaker %s",
            new.name.lower().replace("_", "-"),
            extra={"from": old.name.lower(), "to": new.name.lower(), "why": why},
        )


def _reraise_if_cancelled() -> None:
    """A cancel can be swallowed inside redis-py (surfacing as a retried TimeoutError when it races
    a read timeout), so a helper loop checks at each turn; otherwise shutdown waits forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _err_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 2000 else text[:2000] + "..."


def _summarise(err: ValidationError, raw: bytes) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}" for e in err.errors()[:5])
    return f"{problems} (payload {len(raw)} bytes)"
