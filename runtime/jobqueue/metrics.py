"""Prometheus metrics of one process. Nothing is registered at import: each process (and each
test) builds a ``Metrics`` on a registry of its own. The seed's names and types are kept.

Hot path: per-priority children are built once and cached (``Metrics.queue(p)``), so recording a
job costs a dict lookup and a few lock-protected additions, never a label lookup or a Redis call.
Queue-wide figures (lengths, ages, in flight) are not here: ``jobqueue.collector`` reads them
from Redis at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Handler run time: 1 ms to 5 min."""
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Ready-to-start wait: 1 ms to 1 h (a backlog can hold jobs for long)."""


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """The children of every ``queue``-labelled metric for one priority, resolved once."""

    produced: Counter
    consumed: Counter
    completed: Counter
    failed: Counter
    retried: Counter
    dead_letter: Counter
    lease_lost: Counter
    processing: Histogram
    wait: Histogram


class Metrics:
    """Every metric a process records itself. ``process_metrics`` adds CPU/memory/GC collectors."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = False) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        q = ["queue"]
        self.jobs_produced = Counter("jobs_produced", "Jobs enqueued by this process", q, registry=r)
        self.jobs_consumed = Counter("jobs_consumed", "Jobs claimed by this process", q, registry=r)
        self.jobs_completed = Counter("jobs_completed", "Jobs completed successfully", q, registry=r)
        self.jobs_failed = Counter(
            "jobs_failed", "Job attempts that did not succeed (retried or dead-lettered)", q, registry=r
        )
        self.jobs_retried = Counter("jobs_retried", "Failed attempts scheduled for a retry", q, registry=r)
        self.jobs_dead_letter = Counter("jobs_dead_letter", "Jobs moved to the dead-letter queue", q, registry=r)
        self.leases_lost = Counter(
            "jobs_lease_lost", "Results refused because the lease had been taken over", q, registry=r
        )
        self.jobs_reaped = Counter("jobs_reaped", "Jobs recovered from expired leases by this process", registry=r)
        self.circuit_breaker_trips = Counter("circuit_breaker_trips", "Times the circuit breaker opened", registry=r)
        self.redis_errors = Counter("redis_errors", "Failed Redis operations", ["op"], registry=r)
        self.job_processing_duration = Histogram(
            "job_processing_duration_seconds",
            "Handler run time (not backoff or queueing)",
            q,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_queue_wait = Histogram(
            "job_queue_wait_seconds",
            "Time from a job becoming ready (enqueued, retry due, requeued) to its start",
            q,
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.worker_active = Gauge("worker_active", "Jobs running now in this process", registry=r)
        self.circuit_breaker_state = Gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", registry=r)
        self.ready = Gauge("jobqueue_ready", "1 while /readyz would answer 200, else 0", registry=r)
        self._queues: dict[str, QueueMetrics] = {}
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
                produced=self.jobs_produced.labels(priority),
                consumed=self.jobs_consumed.labels(priority),
                completed=self.jobs_completed.labels(priority),
                failed=self.jobs_failed.labels(priority),
                retried=self.jobs_retried.labels(priority),
                dead_letter=self.jobs_dead_letter.labels(priority),
                lease_lost=self.leases_lost.labels(priority),
                processing=self.job_processing_duration.labels(priority),
                wait=self.job_queue_wait.labels(priority),
            )
        return qm

    def preset(self, priorities: tuple[str, ...] | list[str], ops: tuple[str, ...] = ()) -> None:
        """Create the series of every priority (and Redis op) at 0, so rates exist before the first event."""
        for p in priorities:
            self.queue(p)
        for op in ops:
            self.redis_errors.labels(op)
