"""The operator's side of Redis: connect as the JobQueue says, read the queue, wake on new work.

Used by handlers/autoscale.py. The backlog comes from the runtime's own accounting
(``Broker.queue_stats``: one round trip); busy workers are read only when a scale-down is being
considered; the runtime PUBLISHes on ``QueueKeys.events_channel`` when an empty queue receives
work, and ``Waker`` turns that into an asyncio.Event so that scaling up from zero takes a
round trip, not a poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from jobqueue.broker import Broker, QueueStats
from jobqueue.config import RedisConfig, TLSConfig
from jobqueue.keys import QueueKeys
from jobqueue.redis_conn import connection_kwargs
from jobqueue_operator.models import JobQueueSpec

log = logging.getLogger("jobqueue_operator.queue")

#: The operator's own connection limits: fail fast, keep current replicas, try next poll.
DIAL_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 3.0
#: Above this many jobs in flight, busy workers are not counted one by one (all pods are assumed busy).
BUSY_SCAN_LIMIT = 20_000


class CredentialsMissing(Exception):
    """The Secret named by spec.redis.auth or spec.redis.tls.caSecretRef is missing or lacks the key."""


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None


def redis_config(spec: JobQueueSpec, creds: Credentials) -> RedisConfig:
    r = spec.redis
    tls = TLSConfig(enabled=r.tls.enabled, insecure_skip_verify=r.tls.insecure_skip_verify)
    data: dict[str, Any] = {
        "db": r.db,
        "tls": tls,
        "dial_timeout": DIAL_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
        "write_timeout": READ_TIMEOUT_S,
        "max_retries": 0,
        "username": creds.username,
        "password": creds.password,
    }
    if r.url:
        data["url"] = r.url
    else:
        data["addr"] = f"{r.host}:{r.port}"
    return RedisConfig.model_validate(data)


def make_client(cfg: RedisConfig, ca_pem: str | None, *, blocking: bool = False) -> Redis:
    """A small pool for the operator; the CA comes as PEM text (no files on a read-only root)."""
    kwargs = connection_kwargs(cfg)
    kwargs["client_name"] = "jobqueue-operator"
    if ca_pem is not None and "ssl_ca_certs" in kwargs:
        kwargs.pop("ssl_ca_certs")
        kwargs["ssl_ca_data"] = ca_pem
    if blocking:
        kwargs["socket_timeout"] = None
        kwargs["health_check_interval"] = 0
    pool = BlockingConnectionPool(max_connections=2 if blocking else 4, timeout=DIAL_TIMEOUT_S, **kwargs)
    return Redis.from_pool(pool)


@dataclass
class QueueProbe:
    """One JobQueue's Redis connection, its broker, and the pub/sub waker."""

    keys: QueueKeys
    client: Redis
    wake_client: Redis
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, name: str, spec: JobQueueSpec, creds: Credentials) -> QueueProbe:
        cfg = redis_config(spec, creds)
        keys = QueueKeys(spec.queue_name or name, tuple(spec.queues))
        probe = cls(keys, make_client(cfg, creds.ca_pem), make_client(cfg, creds.ca_pem, blocking=True))
        probe._task = asyncio.create_task(probe._listen(), name=f"jobqueue-waker:{keys.queue}")
        return probe

    @property
    def broker(self) -> Broker:
        return Broker(self.client, self.keys)

    async def stats(self) -> QueueStats:
        return await self.broker.queue_stats()

    async def busy_workers(self, stats: QueueStats) -> int | None:
        """Distinct workers holding leases; None when too many jobs are in flight to count."""
        if stats.in_flight == 0:
            return 0
        if stats.in_flight > BUSY_SCAN_LIMIT:
            return None
        broker = self.broker
        workers = await broker.job_field(await broker.peek_ids("active", BUSY_SCAN_LIMIT), "worker")
        return len({w for w in workers if w})

    async def _listen(self) -> None:
        """Set ``wake`` whenever the runtime announces work on an empty queue; reconnect on errors."""
        delay = 0.2
        while True:
            pubsub = self.wake_client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.events_channel)
                delay = 0.2
                async for message in pubsub.listen():
                    if message and message.get("type") == "message":
                        self.wake.set()
            except (RedisError, OSError) as err:
                log.debug("wake subscription for %s lost: %s", self.keys.queue, err)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)  # a retry backoff, not a wait for a condition
            delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for client in (self.client, self.wake_client):
            with contextlib.suppress(Exception):
                await client.aclose()
