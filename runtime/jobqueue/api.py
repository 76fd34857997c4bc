"""The Python API applications use to enqueue jobs: ``Queue`` (async) and ``SyncQueue``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from redis.asyncio import Redis

from jobqueue.batching import GroupCommit
from jobqueue.broker import Broker, EnqueueItem, QueueStats
from jobqueue.clock import SYSTEM_CLOCK, Clock
from jobqueue.config import Config, build_config
from jobqueue.errors import EnqueueError
from jobqueue.job import Job
from jobqueue.keys import QueueKeys
from jobqueue.redis_conn import make_client
from jobqueue.tracing import for_config

T = TypeVar("T")


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
        self._group: GroupCommit[EnqueueItem, bool] = GroupCommit(self.broker.enqueue)
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

    async def aclose(self) -> None:
        if self._own_redis:
            await self.redis.aclose()

    def build(self, spec: JobSpec) -> EnqueueItem:
        """Validate and serialise one job, or raise EnqueueError (nothing is written)."""
        priority = spec.priority or self.config.producer.default_priority
        if priority not in self.keys.priorities:
            raise EnqueueError(f"unknown priority {priority!r}; configured: {list(self.keys.priorities)}")
        delay_s = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else (spec.delay or 0.0)
        if delay_s < 0:
            raise EnqueueError("delay must not be negative")
        fields: dict[str, Any] = {
            "type": spec.type,
            "payload": spec.payload,
            "priority": priority,
            "max_retries": spec.max_retries,
            "timeout_s": spec.timeout,
            "filepath": spec.filepath,
            "filesize": spec.filesize,
            "trace_context": spec.trace_context or {},
        }
        if spec.job_id is not None:
            fields["id"] = spec.job_id
        try:
            job = Job(**fields)
            data = job.model_dump_json(exclude_none=True).encode()
        except ValidationError as err:
            first = err.errors()[0]
            raise EnqueueError(f"invalid job: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        except PydanticSerializationError as err:
            raise EnqueueError(f"payload is not JSON-serialisable: {err}") from None
        if (b"NaN" in data or b"Infinity" in data) and _has_non_finite(data):
            raise EnqueueError("payload is not JSON-serialisable: it contains NaN or Infinity")
        if len(data) > self._max_bytes:
            raise EnqueueError(f"job is {len(data)} bytes, over producer.max_payload_bytes={self._max_bytes}")
        max_retries = spec.max_retries if spec.max_retries is not None else self.config.worker.max_retries
        due = self.clock.now_ms() + int(delay_s * 1000) if delay_s > 0 else 0
        return EnqueueItem(job.id, priority, data, due, max_retries)

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
        spec = JobSpec(type, payload, priority, delay, job_id, max_retries, timeout, **extra)
        return (await self.enqueue_many([spec]))[0]

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
