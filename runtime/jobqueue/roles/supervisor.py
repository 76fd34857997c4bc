"""Runs the components of a role in one process and owns signals, health and draining.

First SIGTERM/SIGINT: /readyz turns 503, claiming stops, running jobs get worker.shutdown_timeout
to finish, the rest are requeued, exit 0. A second signal exits at once (status 130); the reaper
of another process recovers what was in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from jobqueue import tracing
from jobqueue.api import Queue
from jobqueue.broker import Broker
from jobqueue.collector import QueueCollector
from jobqueue.config import Config
from jobqueue.errors import JobQueueError
from jobqueue.health import Health, HttpServer
from jobqueue.keys import QueueKeys
from jobqueue.log import set_context
from jobqueue.metrics import Metrics
from jobqueue.redis_conn import describe, make_client, wait_until_reachable
from jobqueue.roles.producer import Producer
from jobqueue.roles.reaper import Reaper
from jobqueue.roles.worker import Worker

log = logging.getLogger("jobqueue.supervisor")


class Supervisor:
    def __init__(self, config: Config, role: str, metrics: Metrics | None = None) -> None:
        self.config = config
        self.role = role
        self.metrics = metrics or Metrics(process_metrics=True)
        self.metrics.preset(config.worker.priorities, ("queue_stats",))
        self.http: HttpServer | None = None
        self.stop = asyncio.Event()
        self._signals = 0

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; in-flight jobs will be recovered by a reaper")
            os._exit(130)
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        self.health.draining = True
        self.stop.set()

    async def run(self) -> int:
        cfg = self.config
        redis = make_client(cfg.redis)
        self.health = Health(redis.ping)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        server: HttpServer | None = None
        provider = None
        try:
            provider = tracing.setup(cfg.observability.tracing)
            await wait_until_reachable(redis, cfg.redis, self.stop)
            log.info("connected to redis", extra={"redis": describe(cfg.redis), "queue": cfg.queue_name})
            if cfg.observability.metrics_port:
                broker = Broker(redis, QueueKeys(cfg.queue_name, tuple(cfg.worker.priorities)))
                collector = QueueCollector(
                    broker, cfg.observability.queue_sample_interval.total_seconds(), self.metrics
                )
                self.metrics.registry.register(collector)
                server = self.http = HttpServer(
                    cfg.observability.metrics_host,
                    cfg.observability.metrics_port,
                    self.metrics.registry,
                    self.health,
                    collector=collector,
                    ready_gauge=self.metrics.ready,
                )
                await server.start()
            return await self._run_components(redis)
        except JobQueueError as err:
            log.error(str(err))
            return 1
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if server is not None:
                await server.stop()
            await redis.aclose()
            if provider is not None:
                provider.shutdown()

    async def _run_components(self, redis: Any) -> int:
        cfg = self.config
        forever: dict[str, Callable[[], Coroutine[Any, Any, object]]] = {}
        once: dict[str, Callable[[], Coroutine[Any, Any, object]]] = {}
        queue = Queue(cfg, redis=redis)
        if self.role in ("producer", "all"):
            once["producer"] = lambda: Producer(queue, self.metrics).run(self.stop)
        if self.role in ("worker", "all"):
            worker = Worker(cfg, redis=redis, metrics=self.metrics)
            set_context(worker_id=worker.worker_id)
            reaper = Reaper(worker.broker, cfg.worker.reaper_interval.total_seconds(), self.metrics)
            forever["worker"] = lambda: worker.run(self.stop)
            forever["reaper"] = lambda: reaper.run(self.stop)
        tasks: dict[str, asyncio.Task[object]] = {
            name: asyncio.create_task(fn(), name=name) for name, fn in {**once, **forever}.items()
        }
        for name, task in tasks.items():
            self.health.watch(name, task, forever=name in forever)
        status = 0
        pending = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.cancelled():
                    continue
                err = task.exception()
                if err is not None:
                    log.error("role task %s died", task.get_name(), exc_info=err)
                    status = 1
                    self.stop.set()
                elif task.get_name() in once and not forever:
                    self.stop.set()
        return status
