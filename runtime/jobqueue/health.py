"""The HTTP side of a process: /metrics, /healthz (alive) and /readyz (can take work).

The supervisor starts it for the producer, worker and all-in-one roles (never for one-shot admin
commands). /healthz fails only when a role task has died, so Kubernetes restarts the pod;
/readyz fails while Redis does not answer or the process is draining, so traffic and scaling
decisions leave it alone. Both answer with the reason in the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from redis.exceptions import AuthenticationError, ResponseError

from jobqueue.collector import QueueCollector
from jobqueue.errors import JobQueueError

log = logging.getLogger("jobqueue.health")


class Health:
    """What /healthz and /readyz report: role tasks watched, draining flag, a Redis probe."""

    def __init__(self, redis_probe: Callable[[], Awaitable[object]]) -> None:
        self.tasks: dict[str, asyncio.Task[object]] = {}
        self.forever: set[str] = set()
        self.draining = False
        self.redis_probe = redis_probe

    def watch(self, name: str, task: asyncio.Task[object], forever: bool = False) -> None:
        """Watch a role task; a ``forever`` task that returns before draining counts as dead too."""
        self.tasks[name] = task
        if forever:
            self.forever.add(name)

    def dead_reason(self) -> str | None:
        for name, task in self.tasks.items():
            if not task.done() or task.cancelled():
                continue
            if task.exception() is not None:
                return f"role task {name} died: {task.exception()!r}"
            if name in self.forever and not self.draining:
                return f"role task {name} exited unexpectedly"
        return None

    async def not_ready_reason(self) -> str | None:
        if self.draining:
            return "draining: shutting down"
        dead = self.dead_reason()
        if dead:
            return dead
        try:
            async with asyncio.timeout(2.0):
                await self.redis_probe()
        except TimeoutError:
            return "redis unreachable: no answer to PING within 2s"
        except AuthenticationError as err:
            return f"redis refused the credentials: {err}"
        except ResponseError as err:
            return f"redis answered with an error: {err}"
        except Exception as err:  # any other failure to PING means not ready; report it
            return f"redis unreachable: {err}"
        return None


class HttpServer:
    """/metrics, /healthz, /readyz. ``port`` 0 picks a free port (tests); ``bound_port`` tells which."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Health,
        *,
        collector: QueueCollector | None = None,
        ready_gauge: Gauge | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.registry = registry
        self.health = health
        self.collector = collector
        self.ready_gauge = ready_gauge
        self.bound_port: int | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise JobQueueError(
                f"cannot serve metrics/health on {self.host}:{self.port}: {err.strerror or err} "
                "(set observability.metrics_port / OBSERVABILITY_METRICS_PORT, or 0 to disable)"
            ) from None
        addresses = self._runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else self.port
        log.info("http server listening", extra={"host": self.host, "port": self.bound_port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        refresh = self.collector.refresh() if self.collector is not None else asyncio.sleep(0)
        await asyncio.gather(refresh, self._ready_reason())
        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _ready_reason(self) -> str | None:
        reason = await self.health.not_ready_reason()
        if self.ready_gauge is not None:
            self.ready_gauge.set(0 if reason else 1)
        return reason

    async def _healthz(self, _: web.Request) -> web.Response:
        reason = self.health.dead_reason()
        if reason:
            return web.Response(status=500, text=reason + "\n")
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        reason = await self._ready_reason()
        if reason:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ready\n")
