"""RQ: a job runs in a fork of a worker that runs one job at a time; concurrency comes from
``rq worker-pool -n 8`` (8 worker processes). RQ has no way to run 8 jobs at once in one process."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from adapters import probe
from adapters.base import BIN, Adapter


def noop(i: int) -> None:
    probe.hit(i)


class RQAdapter(Adapter):
    name = "RQ"
    dist = "rq"
    delivery = (
        "at-least-once only with `Retry` per job; by default a job whose worker died is moved to the "
        "failed registry (`AbandonedJobError`), not run again"
    )
    settings = (
        "`rq worker-pool -n 8 default` (8 processes, default `Worker` class: fork per job), "
        "`Queue('default').enqueue(noop, i)`, defaults otherwise (result_ttl 500 s)"
    )
    bulk_api = "`Queue.enqueue_many` (one pipeline)"
    guarantee = "only with per-job `Retry`"
    probe_each = True  # jobs run in short-lived forks: count them in the benchmark process

    async def open(self) -> None:
        self.redis = Redis.from_url(self.url)
        self.q = Queue("default", connection=self.redis)

    async def close(self) -> None:
        self.redis.close()

    async def enqueue(self, i: int) -> None:
        self.q.enqueue(noop, i)

    async def enqueue_bulk(self, ids: range) -> None:
        self.q.enqueue_many([Queue.prepare_data(noop, (i,)) for i in ids])

    def worker_command(self) -> list[str]:
        return [str(BIN / "rq"), "worker-pool", "-u", self.url, "-n", "8", "-q", "default"]
