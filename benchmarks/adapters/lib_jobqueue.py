"""jobqueue: the producer adapter, and (``python -m adapters.lib_jobqueue``) its worker process.

The worker uses the public API only: ``jobqueue.Worker(cfg).run(stop)`` until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import jobqueue
from adapters import probe
from adapters.base import Adapter

HANDLER = "adapters.lib_jobqueue:noop"


def config(url: str) -> jobqueue.Config:
    """8 concurrent jobs in one process, 32 prefetched (what Celery prefetches by default at
    concurrency 8: worker_prefetch_multiplier 4 x 8; Dramatiq's default is 2 x threads), everything
    else default except the circuit breaker (off: no peer has one, a no-op never fails). Direct
    handoff (worker.handoff) is on by default."""
    return jobqueue.build_config(
        {
            "queue_name": "bench",
            "redis": {"url": url},
            "worker": {"count": 8, "prefetch": 32, "handler": HANDLER},
            "circuit_breaker": {"enabled": False},
        }
    )


async def noop(job: jobqueue.Job) -> None:
    probe.hit(job.payload)


class JobqueueAdapter(Adapter):
    name = "jobqueue"
    dist = "jobqueue"
    delivery = "at-least-once (lease + heartbeat; the reaper requeues a dead worker's jobs)"
    settings = (
        "`jobqueue.Worker` (public API) in its own process; `worker.count: 8`, `worker.prefetch: 32` "
        "(Celery's default at concurrency 8), "
        "`circuit_breaker.enabled: false`, all else default (heartbeat TTL 30 s, completed_keep 1000); "
        "async no-op handler by `worker.handler`"
    )
    bulk_api = "`Queue.enqueue_many` (one EVALSHA per 1000 jobs)"
    guarantee = "at-least-once"
    at_least_once = True

    async def open(self) -> None:
        self.q = jobqueue.Queue(config(self.url))

    async def close(self) -> None:
        await self.q.aclose()

    async def enqueue(self, i: int) -> None:
        await self.q.enqueue("", i)

    async def enqueue_bulk(self, ids: range) -> None:
        await self.q.enqueue_many([jobqueue.JobSpec(payload=i) for i in ids])

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "adapters.lib_jobqueue"]


async def _serve(url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await jobqueue.Worker(config(url)).run(stop)


def main() -> None:
    asyncio.run(_serve(os.environ["BENCH_REDIS_URL"]))


if __name__ == "__main__":
    main()
