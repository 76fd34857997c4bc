"""The reaper: recovers jobs whose lease expired (crashed or hung workers).

It reads the lease set, never the keyspace. Recovery time after a worker dies is at most
``worker.heartbeat_ttl`` (the lease) plus ``worker.reaper_interval``. Every worker process runs
one; the reap script is atomic, so any number may run at once.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from jobqueue.broker import Broker
from jobqueue.metrics import Metrics

log = logging.getLogger("jobqueue.reaper")

BATCH = 500


class Reaper:
    def __init__(self, broker: Broker, interval_s: float, metrics: Metrics | None = None) -> None:
        self.broker = broker
        self.interval_s = interval_s
        self.metrics = metrics or Metrics()

    async def reap_once(self) -> tuple[int, int]:
        """Recover every expired lease now; returns (requeued, dead-lettered)."""
        requeued = dead = 0
        while True:
            result = await self.broker.reap(BATCH)
            requeued += len(result.requeued)
            dead += len(result.dead)
            if result.requeued or result.dead:
                self.metrics.jobs_reaped.inc(len(result.requeued) + len(result.dead))
                await self._count_dead(result.dead)
                log.warning(
                    "recovered jobs from expired leases",
                    extra={"requeued": result.requeued[:20], "dead_lettered": result.dead[:20]},
                )
            if len(result.requeued) + len(result.dead) < BATCH:
                return requeued, dead

    async def _count_dead(self, ids: list[str]) -> None:
        """Dead letters by priority (the ``queue`` label): one pipelined read, only when some died."""
        if not ids:
            return
        try:
            priorities = await self.broker.job_field(ids, "prio")
        except (RedisError, OSError):
            priorities = [None] * len(ids)
        for p in priorities:
            self.metrics.queue(p or "unknown").dead_letter.inc()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reap_once()
            except (RedisError, OSError) as err:
                self.metrics.redis_errors.labels("reap").inc()
                log.warning("reaper pass failed; will retry", extra={"error": str(err)})
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                pass
