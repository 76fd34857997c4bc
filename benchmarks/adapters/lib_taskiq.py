"""taskiq with taskiq-redis: ``taskiq worker adapters.lib_taskiq:<broker> --workers 1 --max-async-tasks 8``,
once with ``ListQueueBroker`` (BRPOP; at-most-once) and once with ``RedisStreamBroker`` (consumer
group + XACK; at-least-once)."""

from __future__ import annotations

import os
from typing import Any

from taskiq import AsyncBroker
from taskiq_redis import ListQueueBroker, RedisStreamBroker

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


async def _noop(i: int) -> None:
    probe.hit(i)


list_broker = ListQueueBroker(_URL)
list_broker.register_task(_noop, task_name="noop")
stream_broker = RedisStreamBroker(_URL)
stream_broker.register_task(_noop, task_name="noop")


class _Taskiq(Adapter):
    dist = "taskiq-redis"
    attr: str

    def make_broker(self) -> AsyncBroker:
        raise NotImplementedError

    async def open(self) -> None:
        self.broker = self.make_broker()
        self.task: Any = self.broker.register_task(_noop, task_name="noop")
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue(self, i: int) -> None:
        await self.task.kiq(i)

    def worker_command(self) -> list[str]:
        return [
            str(BIN / "taskiq"),
            "worker",
            f"adapters.lib_taskiq:{self.attr}",
            "--workers",
            "1",
            "--max-async-tasks",
            "8",
        ]


class TaskiqListAdapter(_Taskiq):
    name = "taskiq (ListQueueBroker)"
    attr = "list_broker"
    guarantee = "at-most-once"
    delivery = "at-most-once (BRPOP removes the message before the task runs)"
    settings = (
        "`taskiq worker --workers 1 --max-async-tasks 8`, `ListQueueBroker`, no result backend, "
        "defaults otherwise; `task.kiq(i)`"
    )

    def make_broker(self) -> AsyncBroker:
        return ListQueueBroker(self.url)


class TaskiqStreamAdapter(_Taskiq):
    name = "taskiq (RedisStreamBroker)"
    attr = "stream_broker"
    delivery = "at-least-once (consumer group; XACK after the task; idle pending messages are reclaimed)"
    settings = (
        "`taskiq worker --workers 1 --max-async-tasks 8`, `RedisStreamBroker`, no result backend, "
        "defaults otherwise (ack when saved); `task.kiq(i)`"
    )
    guarantee = "at-least-once"
    at_least_once = True

    def make_broker(self) -> AsyncBroker:
        return RedisStreamBroker(self.url)
