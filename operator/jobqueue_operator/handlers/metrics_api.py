"""The operator's side of the external metrics API (external_metrics.py): start it, feed it, stop it.

The chart sets ``JOBQUEUE_EXTERNAL_METRICS_*`` only with ``externalMetrics.enabled``; without
them nothing here does anything. main.py's startup handler calls ``start``: the server needs the
front-proxy client CA from ``kube-system/extension-apiserver-authentication``, which is read
through kopf's API session, and that session only logs in after the startup handlers return, so
the CA is fetched and the server started by a background task (the chart's readiness probe waits
for the port). The reconcile handler calls ``register`` for every JobQueue it reconciles (create,
update, resume), the delete handler ``unregister``, and the cleanup handler ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from jobqueue.broker import Broker
from jobqueue.keys import QueueKeys
from jobqueue_operator import builders, queue
from jobqueue_operator.external_metrics import Counting, ExternalMetricsServer, Registry, Settings, requestheader_auth
from jobqueue_operator.handlers.common import read_credentials
from jobqueue_operator.kube import APIError, Kube
from jobqueue_operator.models import JobQueueSpec

log = logging.getLogger("jobqueue_operator.metrics_api")
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: Set by the chart only when the external metrics API is enabled.
ENABLE_ENV = "JOBQUEUE_EXTERNAL_METRICS_PORT"
AUTH_NAMESPACE = "kube-system"
AUTH_CONFIGMAP = "extension-apiserver-authentication"
#: Seconds between attempts to read the front-proxy CA (RBAC not bound yet, API not reachable).
CA_RETRY_S = (1.0, 2.0, 5.0, 10.0)
MEMO_KEY = "metrics_api"


@dataclass
class MetricsAPI:
    """What the operator keeps in its memo: the registry, the server once it listens, the clients."""

    registry: Registry = field(default_factory=Registry)
    server: ExternalMetricsServer | None = None
    task: asyncio.Task[None] | None = None
    #: (namespace, name) -> (hash of what the client was opened for, the client).
    clients: dict[tuple[str, str], tuple[str, Redis]] = field(default_factory=dict)
    listening: asyncio.Event = field(default_factory=asyncio.Event)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    return ENABLE_ENV in (os.environ if environ is None else environ)


def _of(memo: Mapping[str, Any]) -> MetricsAPI | None:
    found = memo.get(MEMO_KEY)
    return found if isinstance(found, MetricsAPI) else None


async def _front_proxy_settings(kube: Kube, settings: Settings) -> Settings:
    """Add the front-proxy client CA and allowed names, retrying until the cluster gives them."""
    attempt = 0
    while True:
        try:
            cm = await kube.get("ConfigMap", AUTH_NAMESPACE, AUTH_CONFIGMAP)
            if cm is None:
                raise RuntimeError(f"ConfigMap {AUTH_NAMESPACE}/{AUTH_CONFIGMAP} not found")
            ca, names = requestheader_auth(cm.get("data") or {})
            return dataclasses.replace(settings, client_ca_pem=ca, allowed_names=names)
        except (APIError, RuntimeError, ValueError) as err:
            delay = CA_RETRY_S[min(attempt, len(CA_RETRY_S) - 1)]
            log.warning("cannot read the front-proxy client CA (retrying in %.0fs): %s", delay, err)
            attempt += 1
            await asyncio.sleep(delay)  # a retry backoff, not a wait for a condition


async def _serve(api: MetricsAPI, kube: Kube, settings: Settings) -> None:
    try:
        if settings.require_client_cert and not settings.client_ca_pem:
            settings = await _front_proxy_settings(kube, settings)
        server = ExternalMetricsServer(api.registry, settings)
        await server.start()
    except (OSError, ValueError) as err:  # no certificate, port taken: the readiness probe shows it
        log.error("the external metrics API cannot start: %s", err)
        return
    api.server = server
    api.listening.set()


def start(memo: MutableMapping[str, Any], kube: Kube, environ: Mapping[str, str] | None = None) -> MetricsAPI | None:
    """Startup: begin serving when the chart enabled it (returns at once; see the module doc)."""
    if not enabled(environ):
        return None
    settings = Settings.from_env(environ)
    api = MetricsAPI()
    api.task = asyncio.create_task(_serve(api, kube, settings), name="jobqueue-external-metrics")
    memo[MEMO_KEY] = api
    return api


async def stop(memo: Mapping[str, Any]) -> None:
    """Cleanup: stop listening and close every JobQueue's Redis client."""
    api = _of(memo)
    if api is None:
        return
    if api.task is not None and not api.task.done():
        api.task.cancel()
    if api.task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await api.task
    if api.server is not None:
        await api.server.stop()
        api.server = None
    for key in list(api.clients):
        await _close(api, key)


async def _close(api: MetricsAPI, key: tuple[str, str]) -> None:
    _, client = api.clients.pop(key, ("", None))
    if client is not None:
        with contextlib.suppress(Exception):
            await client.aclose()


async def register(
    memo: Mapping[str, Any], kube: Kube, *, namespace: str, name: str, spec: JobQueueSpec, logger: Logger
) -> None:
    """Serve this JobQueue's figures from its Redis (a lazy pool, reopened when spec.redis or its
    Secrets change). Missing credentials only log: the autoscaler reports them on the JobQueue."""
    api = _of(memo)
    if api is None:
        return
    try:
        creds = await read_credentials(kube, namespace, spec)
    except (queue.CredentialsMissing, APIError) as err:
        logger.warning("external metrics: not serving this JobQueue yet: %s", err)
        return
    key = (namespace, name)
    digest = builders.hash_of(
        [spec.redis.model_dump(mode="json"), spec.queue_name, spec.queues, creds.username, creds.password, creds.ca_pem]
    )
    if key not in api.clients or api.clients[key][0] != digest:
        await _close(api, key)
        api.clients[key] = (digest, queue.make_client(queue.redis_config(spec, creds), creds.ca_pem))
    broker = Broker(api.clients[key][1], QueueKeys(spec.queue_name or name, tuple(spec.queues)))
    api.registry.register(
        namespace, name, broker, Counting(spec.scaling.count_in_flight, spec.scaling.count_delayed_due)
    )


async def unregister(memo: Mapping[str, Any], namespace: str, name: str) -> None:
    api = _of(memo)
    if api is None:
        return
    api.registry.unregister(namespace, name)
    await _close(api, (namespace, name))
