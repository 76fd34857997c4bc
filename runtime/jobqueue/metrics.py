"""Prometheus metrics of one process. Nothing is registered at import: each process (and each
test) builds a ``Metrics`` on a registry of its own. The seed's names and types are kept.

Hot path: per-priority children are built once and cached (``Metrics.queue(p)``), so recording a
job costs a dict lookup and a few plain additions (``LoopCounter``, ``LoopHistogram``: event-loop
only, no lock), never a label lookup or a Redis call.
Queue-wide figures (lengths, ages, in flight) are not here: ``jobqueue.collector`` reads them
from Redis at scrape time.
"""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Handler run time: 1 ms to 5 min."""
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Ready-to-start wait: 1 ms to 1 h (a backlog can hold jobs for long)."""


class LoopCounter:
    """A counter child for the event loop: a plain number, no lock.

    prometheus-client's children take a lock per update (they may be shared with threads); with
    several updates per job that was about a twentieth of a worker's CPU on short jobs. These are
    only ever updated from the process's event loop thread, so the GIL is all they need.
    """

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class LoopHistogram:
    """A histogram child for the event loop (see ``LoopCounter``): per-bucket counts and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """The children of every ``queue``-labelled metric for one priority, resolved once."""

    produced: LoopCounter
    consumed: LoopCounter
    completed: LoopCounter
    failed: LoopCounter
    retried: LoopCounter
    dead_letter: LoopCounter
    lease_lost: LoopCounter
    processing: LoopHistogram
    wait: LoopHistogram


_COUNTERS = (
    ("produced", "jobs_produced", "Jobs enqueued by this process"),
    ("consumed", "jobs_consumed", "Jobs claimed by this process"),
    ("completed", "jobs_completed", "Jobs completed successfully"),
    ("failed", "jobs_failed", "Job attempts that did not succeed (retried or dead-lettered)"),
    ("retried", "jobs_retried", "Failed attempts scheduled for a retry"),
    ("dead_letter", "jobs_dead_letter", "Jobs moved to the dead-letter queue"),
    ("lease_lost", "jobs_lease_lost", "Results refused because the lease had been taken over"),
)
_HISTOGRAMS = (
    ("processing", "job_processing_duration_seconds", "Handler run time (not backoff or queueing)", DURATION_BUCKETS),
    (
        "wait",
        "job_queue_wait_seconds",
        "Time from a job becoming ready (enqueued, retry due, requeued) to its start",
        WAIT_BUCKETS,
    ),
)


@functools.cache
def _le_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """Bucket labels as prometheus-client writes them ("0.001", "1.0", "+Inf")."""
    return tuple(floatToGoString(b) for b in (*bounds, float("inf")))  # type: ignore[no-untyped-call]


class _QueueCollector(Collector):
    """Exposes the ``queue``-labelled children in the same shape prometheus-client's own
    Counter/Histogram would (``_total``, ``_created``, ``_bucket``/``_count``/``_sum``)."""

    def __init__(self, queues: dict[str, QueueMetrics]) -> None:
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        items = list(self.queues.items())
        for attr, name, doc in _COUNTERS:
            c = CounterMetricFamily(name, doc, labels=["queue"])
            for priority, qm in items:
                child: LoopCounter = getattr(qm, attr)
                c.add_metric([priority], child.value, created=child.created)
            yield c
        for attr, name, doc, bounds in _HISTOGRAMS:
            h = HistogramMetricFamily(name, doc, labels=["queue"])
            for priority, qm in items:
                hist: LoopHistogram = getattr(qm, attr)
                running, buckets = 0, []
                for le, n in zip(_le_labels(bounds), list(hist.counts), strict=True):
                    running += n
                    buckets.append((le, running))
                h.add_metric([priority], buckets, hist.sum)
            yield h


class Metrics:
    """Every metric a process records itself. ``process_metrics`` adds CPU/memory/GC collectors."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = False) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._queues: dict[str, QueueMetrics] = {}
        r.register(_QueueCollector(self._queues))
        self.jobs_reaped = Counter("jobs_reaped", "Jobs recovered from expired leases by this process", registry=r)
        self.circuit_breaker_trips = Counter("circuit_breaker_trips", "Times the circuit breaker opened", registry=r)
        self.redis_errors = Counter("redis_errors", "Failed Redis operations", ["op"], registry=r)
        self.worker_active = Gauge("worker_active", "Jobs running now in this process", registry=r)
        self.circuit_breaker_state = Gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", registry=r)
        self.ready = Gauge("jobqueue_ready", "1 while /readyz would answer 200, else 0", registry=r)
        if process_metrics:
            from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def queue(self, priority: str) -> QueueMetrics:
        """The cached children for one priority (the ``queue`` label); built on first use."""
        qm = self._queues.get(priority)
        if qm is None:
            qm = self._queues[priority] = QueueMetrics(
                produced=LoopCounter(),
                consumed=LoopCounter(),
                completed=LoopCounter(),
                failed=LoopCounter(),
                retried=LoopCounter(),
                dead_letter=LoopCounter(),
                lease_lost=LoopCounter(),
                processing=LoopHistogram(DURATION_BUCKETS),
                wait=LoopHistogram(WAIT_BUCKETS),
            )
        return qm

    def preset(self, priorities: tuple[str, ...] | list[str], ops: tuple[str, ...] = ()) -> None:
        """Create the series of every priority (and Redis op) at 0, so rates exist before the first event."""
        for p in priorities:
            self.queue(p)
        for op in ops:
            self.redis_errors.labels(op)
