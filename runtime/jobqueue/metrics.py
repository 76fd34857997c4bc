"""Prometheus metrics. Nothing is registered at import: each process (and each test) builds a
``Metrics`` on a registry of its own. Names and types of the seed are kept."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs_produced = Counter("jobs_produced", "Jobs enqueued by this process", registry=r)
        self.jobs_consumed = Counter("jobs_consumed", "Jobs claimed by this process", registry=r)
        self.jobs_completed = Counter("jobs_completed", "Jobs completed successfully", registry=r)
        self.jobs_failed = Counter("jobs_failed", "Job attempts that failed", registry=r)
        self.jobs_retried = Counter("jobs_retried", "Failed attempts scheduled for a retry", registry=r)
        self.jobs_dead_letter = Counter("jobs_dead_letter", "Jobs moved to the dead-letter queue", registry=r)
        self.jobs_reaped = Counter("jobs_reaped", "Jobs recovered from expired leases", registry=r)
        self.leases_lost = Counter(
            "jobs_lease_lost", "Results refused because the lease had been taken over", registry=r
        )
        self.circuit_breaker_trips = Counter("circuit_breaker_trips", "Times the circuit breaker opened", registry=r)
        self.redis_errors = Counter("redis_errors", "Failed Redis operations", ["op"], registry=r)
        self.job_processing_duration = Histogram(
            "job_processing_duration_seconds",
            "Handler run time (not backoff or queueing)",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.job_queue_wait = Histogram(
            "job_queue_wait_seconds",
            "Time from a job becoming ready to its start",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.worker_active = Gauge("worker_active", "Jobs running now in this process", registry=r)
        self.circuit_breaker_state = Gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", registry=r)
