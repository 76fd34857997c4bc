"""The Python API applications use to enqueue jobs: ``Queue`` (async) and ``SyncQueue``."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from jobqueue.batching import GroupCommit
from jobqueue.broker import Broker, EnqueueItem, QueueStats
from jobqueue.clock import SYSTEM_CLOCK, Clock
from jobqueue.config import Config, build_config
from jobqueue.errors import EnqueueError
from jobqueue.job import ID_PATTERN, Job, dump_job_fields, new_job_id, rfc3339_now
from jobqueue.keys import QueueKeys
from jobqueue.redis_conn import make_client
from jobqueue.tracing import for_config

T = TypeVar("T")

_MAX_EXACT_INT_FLOAT = 2**53
"""An int timeout up to this converts to float exactly; a larger one takes the model path."""


@dataclass(frozen=True)
class JobSpec:
    """One job for ``enqueue_many``; the same fields as ``Queue.enqueue``'s arguments."""

    type: str = ""
    payload: Any = None
    priority: str | None = None
    delay: float | timedelta | None = None
    job_id: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    filepath: str | None = None
    filesize: int | None = None
    trace_context: dict[str, str] | None = None


class Queue:
    """Enqueue jobs into one logical queue. Safe to share between tasks of one event loop.

    ``enqueue`` is idempotent for caller-given ids: a second enqueue of an existing id changes
    nothing and returns the id.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        redis: Redis | None = None,
        clock: Clock = SYSTEM_CLOCK,
        tracer: Any = None,
    ) -> None:
        self.config = config or build_config()
        self.keys = QueueKeys(self.config.queue_name, tuple(self.config.worker.priorities))
        self._own_redis = redis is None
        self.redis = redis or make_client(self.config.redis)
        self.clock = clock
        self.broker = Broker(self.redis, self.keys, clock)
        self._max_bytes = self.config.producer.max_payload_bytes
        self._group: GroupCommit[EnqueueItem, bool] = GroupCommit(self._send_group)
        # The group commit sends one call at a time: it keeps a connection of its own rather than
        # checking one out of the pool per send (pool lock, timeout and a read probe each time,
        # a good part of a lone enqueue's client time).
        self._group_conn: Connection | None = None
        self.tracing = for_config(self.config.observability.tracing, tracer)

    @classmethod
    def from_url(cls, url: str, queue_name: str = "default", priorities: Sequence[str] = ("high", "low")) -> Queue:
        return cls(
            build_config(
                {
                    "queue_name": queue_name,
                    "redis": {"url": url},
                    "worker": {"priorities": list(priorities)},
                    "producer": {"default_priority": priorities[-1]},
                }
            )
        )

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send_group(self, items: list[EnqueueItem]) -> list[bool]:
        if self._group_conn is None:
            self._group_conn = await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        return await self.broker.run(self.broker.enqueue_call(items), self._group_conn)

    async def aclose(self) -> None:
        conn, self._group_conn = self._group_conn, None
        if conn is not None:
            await self.redis.connection_pool.release(conn)
        if self._own_redis:
            await self.redis.aclose()

    def build(self, spec: JobSpec) -> EnqueueItem:
        """Validate and serialise one job, or raise EnqueueError (nothing is written)."""
        return self._build(
            spec.type,
            spec.payload,
            spec.priority,
            spec.delay,
            spec.job_id,
            max_retries=spec.max_retries,
            timeout=spec.timeout,
            filepath=spec.filepath,
            filesize=spec.filesize,
            trace_context=spec.trace_context,
        )

    def _build(
        self,
        type_: str,
        payload: Any,
        priority: str | None,
        delay: float | timedelta | None,
        job_id: str | None,
        *,
        max_retries: int | None,
        timeout: float | None,
        filepath: str | None = None,
        filesize: int | None = None,
        trace_context: dict[str, str] | None = None,
    ) -> EnqueueItem:
        priority = priority or self.config.producer.default_priority
        if priority not in self.keys.priorities:
            raise EnqueueError(f"unknown priority {priority!r}; configured: {list(self.keys.priorities)}")
        delay_s = delay.total_seconds() if isinstance(delay, timedelta) else (delay or 0.0)
        if delay_s < 0:
            raise EnqueueError("delay must not be negative")
        trace_context = trace_context or {}
        # The hot path when every field but the payload is of an exact plain type and certainly
        # valid, so the model would take it unchanged: serialise the fields in the model's order and
        # shape without building it. Anything else (a refusal, or a value the model would convert,
        # such as a str subclass or a bool) takes the model path, which decides and words it exactly
        # as before. fullmatch is stricter than the model's match (which lets a trailing newline
        # through), so such an id goes the model's way too.
        if (
            type(type_) is str
            and type(priority) is str
            and (job_id is None or (type(job_id) is str and ID_PATTERN.fullmatch(job_id) is not None))
            and (max_retries is None or (type(max_retries) is int and max_retries >= 0))
            and (
                timeout is None
                or (type(timeout) is float and 0.0 < timeout < math.inf)
                or (type(timeout) is int and 0 < timeout <= _MAX_EXACT_INT_FLOAT)
            )
            and (filepath is None or type(filepath) is str)
            and (filesize is None or (type(filesize) is int and filesize >= 0))
            and type(trace_context) is dict
            and (not trace_context or all(type(k) is str and type(v) is str for k, v in trace_context.items()))
        ):
            if job_id is None:
                job_id = new_job_id()
            fields: dict[str, Any] = {"id": job_id, "type": type_}
            if payload is not None:
                fields["payload"] = payload
            fields["priority"] = priority
            fields["retries"] = 0
            fields["creation_time"] = rfc3339_now()
            if max_retries is not None:
                fields["max_retries"] = max_retries
            if timeout is not None:
                fields["timeout_s"] = float(timeout)
            fields["trace_context"] = trace_context
            if filepath is not None:
                fields["filepath"] = filepath
            if filesize is not None:
                fields["filesize"] = filesize
            try:
                data = dump_job_fields(fields)
            except PydanticSerializationError as err:
                raise EnqueueError(f"payload is not JSON-serialisable: {err}") from None
        else:
            job_id, data = _model_json(
                {
                    "type": type_,
                    "payload": payload,
                    "priority": priority,
                    "max_retries": max_retries,
                    "timeout_s": timeout,
                    "filepath": filepath,
                    "filesize": filesize,
                    "trace_context": trace_context,
                },
                job_id,
            )
        if (b"NaN" in data or b"Infinity" in data) and _has_non_finite(data):
            raise EnqueueError("payload is not JSON-serialisable: it contains NaN or Infinity")
        if len(data) > self._max_bytes:
            raise EnqueueError(f"job is {len(data)} bytes, over producer.max_payload_bytes={self._max_bytes}")
        if max_retries is None:
            max_retries = self.config.worker.max_retries
        due = self.clock.now_ms() + int(delay_s * 1000) if delay_s > 0 else 0
        return EnqueueItem(job_id, priority, data, due, max_retries)

    async def enqueue(
        self,
        type: str = "",
        payload: Any = None,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        job_id: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        **extra: Any,
    ) -> str:
        """Enqueue one job (one round trip); returns its id."""
        if extra or self.tracing is not None:
            spec = JobSpec(type, payload, priority, delay, job_id, max_retries, timeout, **extra)
            return (await self.enqueue_many([spec]))[0]
        # enqueue_many([JobSpec(...)]) without the spec, the list and two coroutines on the way.
        item = self._build(type, payload, priority, delay, job_id, max_retries=max_retries, timeout=timeout)
        await self._group.submit(item)
        return item.id

    async def enqueue_many(self, specs: Iterable[JobSpec], chunk: int = 1000) -> list[str]:
        """Enqueue many jobs, one round trip per ``chunk``; all are validated before any is sent.

        With tracing on, one enqueue span covers the call and every job without a trace context
        of its own carries it (W3C traceparent), so the worker's spans join the same trace.
        """
        if self.tracing is None:
            return await self._send([self.build(s) for s in specs], chunk)
        specs = list(specs)
        with self.tracing.enqueue(self.keys.queue, len(specs)) as carrier:
            items = [self.build(s if s.trace_context else replace(s, trace_context=carrier)) for s in specs]
            self.tracing.annotate_ids([it.id for it in items])
            return await self._send(items, chunk)

    async def _send(self, items: list[EnqueueItem], chunk: int) -> list[str]:
        if len(items) == 1:
            await self._group.submit(items[0])
            return [items[0].id]
        for i in range(0, len(items), chunk):
            await self.broker.enqueue(items[i : i + chunk])
        return [it.id for it in items]

    async def stats(self) -> QueueStats:
        return await self.broker.queue_stats()


_MAX_EXACT_INT_FLOAT = 2**53


def _model_json(fields: dict[str, Any], job_id: str | None) -> tuple[str, bytes]:
    """The reference path: build and validate a ``Job``, then serialise it; EnqueueError if refused."""
    fields["id"] = job_id if job_id is not None else new_job_id()
    fields["creation_time"] = rfc3339_now()
    try:
        job = Job(**fields)
        return job.id, job.model_dump_json(exclude_none=True).encode()
    except ValidationError as err:
        first = err.errors()[0]
        raise EnqueueError(f"invalid job: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    except PydanticSerializationError as err:
        raise EnqueueError(f"payload is not JSON-serialisable: {err}") from None


def _has_non_finite(data: bytes) -> bool:
    """Exact check behind the cheap substring test (a string may merely contain "NaN")."""

    def reject(token: str) -> None:
        raise ValueError(token)

    try:
        json.loads(data, parse_constant=reject)
    except ValueError:
        return True
    return False


class SyncQueue:
    """The same API for synchronous code: a private event loop runs in a daemon thread."""

    def __init__(self, config: Config | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobqueue-sync", daemon=True)
        self._thread.start()
        self._queue: Queue = self._call(self._make(config))

    @staticmethod
    async def _make(config: Config | None) -> Queue:
        return Queue(config)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def enqueue(self, type: str = "", payload: Any = None, **kwargs: Any) -> str:
        return self._call(self._queue.enqueue(type, payload, **kwargs))

    def enqueue_many(self, specs: Iterable[JobSpec], chunk: int = 1000) -> list[str]:
        return self._call(self._queue.enqueue_many(list(specs), chunk))

    def stats(self) -> QueueStats:
        return self._call(self._queue.stats())

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._queue.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
