"""SAQ: ``saq adapters.lib_saq.settings`` (one process) with ``concurrency: 8``."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


async def noop(ctx: Any, *, i: int) -> None:
    probe.hit(i)


settings: dict[str, Any] = {"queue": Queue.from_url(_URL), "functions": [noop], "concurrency": 8}


class SaqAdapter(Adapter):
    name = "SAQ"
    dist = "saq"
    delivery = (
        "at-least-once only with `retries >= 2` per job; by default (retries=1) the sweeper aborts a "
        "job whose worker died"
    )
    settings = "`saq settings` (1 process), `concurrency: 8`, defaults otherwise; `Queue.enqueue('noop', i=i)`"
    guarantee = "only with per-job `retries >= 2`"

    async def open(self) -> None:
        self.q = Queue.from_url(self.url)
        await self.q.connect()

    async def close(self) -> None:
        await self.q.disconnect()

    async def enqueue(self, i: int) -> None:
        await self.q.enqueue("noop", i=i)

    def worker_command(self) -> list[str]:
        return [str(BIN / "saq"), "adapters.lib_saq.settings", "--workers", "1"]
