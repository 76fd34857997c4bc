"""Queue-wide figures (lengths, oldest age, in flight, scheduled, dead letters, live workers),
read from Redis when Prometheus scrapes, not by a background sampler.

prometheus-client calls ``collect()`` synchronously from a thread, and our Redis client is async,
so the HTTP handler first awaits ``refresh()`` (one ``queue_stats`` round trip, skipped when the
last read is younger than ``observability.queue_sample_interval``), then ``collect()`` reports
that snapshot. Every process of a queue reports the same figures: aggregate them with ``max``,
not ``sum``. When Redis cannot be read the figures are left out (never stale) and
``queue_stats_up`` is 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from jobqueue.broker import Broker, QueueStats
from jobqueue.metrics import Metrics

log = logging.getLogger("jobqueue.collector")

TIMEOUT_S = 2.0
"""Longest a scrape waits for Redis; past it the queue-wide figures are left out of that scrape."""


class QueueCollector(Collector):
    def __init__(self, broker: Broker, min_interval_s: float, metrics: Metrics | None = None) -> None:
        self.broker = broker
        self.min_interval_s = min_interval_s
        self.metrics = metrics
        self.stats: QueueStats | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> QueueStats | None:
        """Read the figures unless the last good read is recent enough; concurrent scrapes share one read."""
        async with self._lock:
            if self.stats is not None and time.monotonic() - self._read_at < self.min_interval_s:
                return self.stats  # a failed read is retried at the next scrape
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    self.stats = await self.broker.queue_stats()
            except (RedisError, OSError, TimeoutError) as err:
                self.stats = None
                if self.metrics is not None:
                    self.metrics.redis_errors.labels("queue_stats").inc()
                log.warning("cannot read queue figures for /metrics", extra={"error": str(err) or type(err).__name__})
            self._read_at = time.monotonic()
            return self.stats

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families(None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self.stats)

    def _families(self, s: QueueStats | None) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("queue_stats_up", "1 when the last read of queue-wide figures from Redis succeeded")
        length = GaugeMetricFamily("queue_length", "Jobs ready and waiting, per priority", labels=["queue"])
        age = GaugeMetricFamily(
            "queue_oldest_job_age_seconds", "Age of the oldest ready job, per priority (0 when empty)", labels=["queue"]
        )
        in_flight = GaugeMetricFamily("jobs_in_flight", "Jobs leased to workers now (whole queue)")
        scheduled = GaugeMetricFamily("jobs_scheduled", "Delayed jobs and retries waiting for their time")
        due = GaugeMetricFamily("jobs_scheduled_due", "Scheduled jobs whose time has come, not yet promoted")
        dead = GaugeMetricFamily("dead_letter_length", "Jobs in the dead-letter queue")
        workers = GaugeMetricFamily("workers_live", "Worker processes registered and renewing")
        if s is not None:
            up.add_metric([], 1)
            for p in s.priorities:
                length.add_metric([p.name], p.pending)
                age.add_metric([p.name], max((s.now_ms - p.oldest_ready_ms) / 1000, 0.0) if p.oldest_ready_ms else 0.0)
            in_flight.add_metric([], s.in_flight)
            scheduled.add_metric([], s.scheduled)
            due.add_metric([], s.scheduled_due)
            dead.add_metric([], s.dead)
            workers.add_metric([], s.live_workers)
        elif self._read_at > -float("inf"):
            up.add_metric([], 0)
        yield from (up, length, age, in_flight, scheduled, due, dead, workers)
