"""Huey: ``huey_consumer adapters.lib_huey.huey -k thread -w 8`` (one process, 8 threads)."""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey  # type: ignore[import-untyped]

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


def _noop(i: int) -> None:
    probe.hit(i)


huey = RedisHuey("bench", url=_URL)
noop = huey.task(name="noop")(_noop)


class HueyAdapter(Adapter):
    name = "Huey"
    dist = "huey"
    delivery = "at-most-once (the task is popped before it runs; a killed consumer loses it)"
    settings = (
        "`huey_consumer -k thread -w 8`, `RedisHuey` (blocking BRPOP, read_timeout 1 s), results on, "
        "defaults otherwise; `task(i)`"
    )
    bulk_api = "`task.map(ids)` (one enqueue round trip per task)"
    guarantee = "at-most-once"

    async def open(self) -> None:
        self.huey = RedisHuey("bench", url=self.url)
        self.task: Any = self.huey.task(name="noop")(_noop)

    async def close(self) -> None:
        self.huey.storage.conn.close()

    async def enqueue(self, i: int) -> None:
        self.task(i)

    async def enqueue_bulk(self, ids: range) -> None:
        self.task.map(ids)

    def worker_command(self) -> list[str]:
        return [str(BIN / "huey_consumer"), "adapters.lib_huey.huey", "-k", "thread", "-w", "8"]
