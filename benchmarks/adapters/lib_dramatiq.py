"""Dramatiq: ``dramatiq adapters.lib_dramatiq --processes 1 --threads 8``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from adapters import probe
from adapters.base import BIN, Adapter

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")  # set in the worker process


def _noop(i: int) -> None:
    probe.hit(i)


broker = RedisBroker(url=_URL)  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)
noop = dramatiq.actor(actor_name="noop", broker=broker)(_noop)


class DramatiqAdapter(Adapter):
    name = "Dramatiq"
    dist = "dramatiq"
    delivery = "at-least-once (messages are acked after the actor runs; a dead worker's are requeued)"
    settings = (
        "`dramatiq --processes 1 --threads 8`, `RedisBroker`, default middleware (Retries, TimeLimit, ...), "
        "defaults otherwise (worker_timeout 1000 ms: idle polling backs off up to 1 s); `actor.send(i)`"
    )
    bulk_api = "`group([...]).run()` (one enqueue round trip per message)"
    guarantee = "at-least-once"
    at_least_once = True

    async def open(self) -> None:
        self.broker = RedisBroker(url=self.url)  # type: ignore[no-untyped-call]
        self.actor = dramatiq.actor(actor_name="noop", broker=self.broker)(_noop)

    async def close(self) -> None:
        self.broker.close()

    async def enqueue(self, i: int) -> None:
        self.actor.send(i)

    async def enqueue_bulk(self, ids: range) -> None:
        dramatiq.group([self.actor.message(i) for i in ids], broker=self.broker).run()  # type: ignore[no-untyped-call]

    def worker_command(self) -> list[str]:
        return [str(BIN / "dramatiq"), "adapters.lib_dramatiq", "--processes", "1", "--threads", "8"]
