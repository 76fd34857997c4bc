"""Celery with the Redis broker: ``celery -A adapters.lib_celery worker --pool threads --concurrency 8``.

``task_acks_late`` is on: Celery's documented way to get at-least-once (its default acks a task
before running it, so a worker killed mid-task loses it)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, group  # type: ignore[import-untyped]

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


def _noop(i: int) -> None:
    probe.hit(i)


def make_app(url: str) -> Any:
    app = Celery("bench", broker=url)
    app.conf.update(task_acks_late=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
    app.task(name="noop")(_noop)
    return app


app = make_app(_URL)


class CeleryAdapter(Adapter):
    name = "Celery"
    dist = "celery"
    delivery = (
        "at-least-once with `task_acks_late=True` as run here (unacked messages are restored after the "
        "Redis visibility timeout, 1 h by default); Celery's default (early ack) is at-most-once"
    )
    settings = (
        "`celery worker --pool threads --concurrency 8` (one process), `task_acks_late=True`, "
        "no result backend, defaults otherwise (prefetch multiplier 4, gossip/mingle/heartbeat on); "
        "`task.delay(i)`"
    )
    bulk_api = "`group(task.s(i) ...).apply_async()` (one publish round trip per task)"
    guarantee = "at-least-once (`acks_late`)"
    at_least_once = True

    async def open(self) -> None:
        self.app = make_app(self.url)
        self.task = self.app.tasks["noop"]

    async def close(self) -> None:
        self.app.close()

    async def enqueue(self, i: int) -> None:
        self.task.delay(i)

    async def enqueue_bulk(self, ids: range) -> None:
        group(self.task.s(i) for i in ids).apply_async()

    def worker_command(self) -> list[str]:
        return [
            str(BIN / "celery"),
            "-A",
            "adapters.lib_celery",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "8",
            "--loglevel",
            "WARNING",
        ]
