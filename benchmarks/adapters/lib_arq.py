"""arq: ``arq adapters.lib_arq.WorkerSettings`` with ``max_jobs = 8``."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


async def noop(ctx: dict[str, Any], i: int) -> None:
    probe.hit(i)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(_URL)
    max_jobs = 8


class ArqAdapter(Adapter):
    name = "arq"
    dist = "arq"
    delivery = "at-least-once (a job stays queued until finished; in-progress key expires after the job timeout)"
    settings = (
        "`arq WorkerSettings`, `max_jobs = 8`, defaults otherwise (poll_delay 0.5 s, keep_result 3600 s); "
        "`ArqRedis.enqueue_job('noop', i)`"
    )
    guarantee = "at-least-once"
    at_least_once = True

    async def open(self) -> None:
        self.pool: ArqRedis = await create_pool(RedisSettings.from_dsn(self.url))

    async def close(self) -> None:
        await self.pool.aclose()

    async def enqueue(self, i: int) -> None:
        await self.pool.enqueue_job("noop", i)

    def worker_command(self) -> list[str]:
        return [str(BIN / "arq"), "adapters.lib_arq.WorkerSettings"]
