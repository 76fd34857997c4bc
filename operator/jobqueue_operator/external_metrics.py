"""The Kubernetes external metrics API (``external.metrics.k8s.io/v1beta1``), served by the operator.

HorizontalPodAutoscalers of JobQueues in ``spec.scaling.mode: hpa`` (hpa.py) read the metric
``jobqueue_backlog`` here, so no Prometheus adapter is needed. The chart registers this server as
an APIService and gives it a serving certificate; the kube-apiserver authenticates and authorizes
the caller, then proxies the request with its front-proxy client certificate, which this server
verifies against the ``requestheader-client-ca-file`` of ``kube-system/extension-apiserver-
authentication`` (see fetch_requestheader_auth) so that nobody can bypass the apiserver.

Metrics, one series per JobQueue, labels ``jobqueue.dev/name`` and ``jobqueue.dev/queue``:
- ``jobqueue_backlog``: work that needs a worker (pending + in flight + due retries, as the
  JobQueue's countInFlight / countDelayedDue say) — the autoscaling metric;
- ``jobqueue_pending``, ``jobqueue_in_flight``, ``jobqueue_dead_letter``: for dashboards and tests.
Every value is read from Redis at request time, in one round trip per queue (Broker.queue_stats).
The operator's handlers keep the Registry up to date as JobQueues come and go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from jobqueue.broker import Broker, QueueStats

log = logging.getLogger("jobqueue_operator.external_metrics")

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
NAME_LABEL = "jobqueue.dev/name"
QUEUE_LABEL = "jobqueue.dev/queue"

#: Metric name -> how its value is read off a queue's figures and the JobQueue's counting rules.
METRICS: dict[str, Callable[[QueueStats, Counting], int]] = {
    "jobqueue_backlog": lambda s, c: s.backlog(c.count_in_flight, c.count_delayed_due),
    "jobqueue_pending": lambda s, c: s.pending,
    "jobqueue_in_flight": lambda s, c: s.in_flight,
    "jobqueue_dead_letter": lambda s, c: s.dead,
}


@dataclass(frozen=True)
class Counting:
    """What the backlog counts, from spec.scaling (both default true, as in the CRD)."""

    count_in_flight: bool = True
    count_delayed_due: bool = True


@dataclass
class Entry:
    namespace: str
    name: str
    broker: Broker
    counting: Counting
    labels: dict[str, str]


@dataclass
class Registry:
    """The JobQueues whose metrics are served, keyed by (namespace, name).

    The operator registers a JobQueue when it reconciles it (with a Broker on that JobQueue's
    Redis) and unregisters it on deletion; this module only reads.
    """

    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)

    def register(
        self,
        namespace: str,
        name: str,
        broker: Broker,
        counting: Counting = Counting(),
        labels: Mapping[str, str] | None = None,
    ) -> None:
        all_labels = {**(labels or {}), NAME_LABEL: name, QUEUE_LABEL: broker.keys.queue}
        self.entries[(namespace, name)] = Entry(namespace, name, broker, counting, all_labels)

    def unregister(self, namespace: str, name: str) -> None:
        self.entries.pop((namespace, name), None)

    def select(self, namespace: str, selector: Selector) -> list[Entry]:
        return sorted(
            (e for (ns, _), e in self.entries.items() if ns == namespace and selector.matches(e.labels)),
            key=lambda e: e.name,
        )


# ------------------------------------------------------------------ label selectors

_REQ = re.compile(
    r"""\s*(?:
        (?P<not>!)\s*(?P<nkey>[\w./-]+) |
        (?P<skey>[\w./-]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\) |
        (?P<key>[\w./-]+)\s*(?P<op>==|!=|=)\s*(?P<value>[\w./-]*) |
        (?P<ekey>[\w./-]+)
    )\s*(?:,|$)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Selector:
    """A Kubernetes label selector in its string form (what the HPA sends as ``labelSelector``)."""

    requirements: tuple[tuple[str, str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Selector:
        reqs: list[tuple[str, str, frozenset[str]]] = []
        text = (text or "").strip()
        pos = 0
        while pos < len(text):
            m = _REQ.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"invalid label selector {text!r} at {pos}")
            pos = m.end()
            if m["nkey"]:
                reqs.append((m["nkey"], "!", frozenset()))
            elif m["skey"]:
                values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
                reqs.append((m["skey"], m["setop"], values))
            elif m["key"]:
                reqs.append((m["key"], "notin" if m["op"] == "!=" else "in", frozenset({m["value"]})))
            else:
                reqs.append((m["ekey"], "exists", frozenset()))
        return cls(tuple(reqs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, op, values in self.requirements:
            present = key in labels
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
            if op == "in" and (not present or labels[key] not in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
        return True


# ------------------------------------------------------------------ API objects


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_resource_list() -> dict[str, Any]:
    """Discovery of our group/version: the metrics it serves."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
            for name in METRICS
        ],
    }


def api_group() -> dict[str, Any]:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status error body, as every Kubernetes API returns."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


async def metric_values(registry: Registry, namespace: str, metric: str, selector: Selector) -> dict[str, Any]:
    """An ExternalMetricValueList: one item per selected JobQueue, read from Redis now."""
    read = METRICS[metric]
    entries = registry.select(namespace, selector)
    stats = await asyncio.gather(*(e.broker.queue_stats() for e in entries))
    now = _now()
    items = [
        {"metricName": metric, "metricLabels": dict(e.labels), "timestamp": now, "value": str(read(s, e.counting))}
        for e, s in zip(entries, stats, strict=True)
    ]
    return {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


# ------------------------------------------------------------------ the server


@dataclass(frozen=True)
class Settings:
    """Where and how to serve; from the environment the chart sets (``from_env``)."""

    port: int = 6443
    host: str = "0.0.0.0"
    cert_file: str = "/tls/tls.crt"
    key_file: str = "/tls/tls.key"
    require_client_cert: bool = True
    #: PEM of the CA that signs the front-proxy client certificate; None: fetch from the cluster.
    client_ca_pem: str | None = None
    #: Common names allowed for the client certificate (requestheader-allowed-names); empty: any.
    allowed_names: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        cert_dir = Path(env.get("JOBQUEUE_EXTERNAL_METRICS_CERT_DIR", "/tls"))
        return cls(
            port=int(env.get("JOBQUEUE_EXTERNAL_METRICS_PORT", "6443")),
            cert_file=str(cert_dir / "tls.crt"),
            key_file=str(cert_dir / "tls.key"),
            require_client_cert=env.get("JOBQUEUE_EXTERNAL_METRICS_REQUIRE_CLIENT_CERT", "true").lower()
            not in ("false", "0", "no"),
        )

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.require_client_cert:
            if not self.client_ca_pem:
                raise ValueError("require_client_cert needs the front-proxy client CA (client_ca_pem)")
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=self.client_ca_pem)
        return ctx


def _common_name(peercert: Any) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def build_app(registry: Registry, settings: Settings) -> web.Application:
    """The aiohttp application; routes follow the API paths the kube-apiserver proxies."""

    @web.middleware
    async def authenticate(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if settings.require_client_cert and settings.allowed_names and request.path not in ("/healthz", "/livez"):
            cn = _common_name(request.transport.get_extra_info("peercert") if request.transport else None)
            if cn not in settings.allowed_names:
                return web.json_response(status(403, "Forbidden", "client certificate not allowed"), status=403)
        return await handler(request)

    async def apis(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]})

    async def group(_: web.Request) -> web.Response:
        return web.json_response(api_group())

    async def resources(_: web.Request) -> web.Response:
        return web.json_response(api_resource_list())

    async def values(request: web.Request) -> web.Response:
        metric = request.match_info["metric"]
        if metric not in METRICS:
            return web.json_response(status(404, "NotFound", f"metric {metric!r} is not served"), status=404)
        try:
            selector = Selector.parse(request.query.get("labelSelector"))
        except ValueError as err:
            return web.json_response(status(400, "BadRequest", str(err)), status=400)
        try:
            body = await metric_values(registry, request.match_info["namespace"], metric, selector)
        except Exception as err:  # Redis down: no value rather than a made-up zero
            log.warning("cannot read queue figures for %s: %s", metric, err)
            return web.json_response(
                status(503, "ServiceUnavailable", f"cannot read the queue: {type(err).__name__}"), status=503
            )
        return web.json_response(body)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/apis", apis)
    app.router.add_get(f"/apis/{GROUP}", group)
    app.router.add_get(f"/apis/{GROUP_VERSION}", resources)
    app.router.add_get(f"/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}", values)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", healthz)
    return app


class ExternalMetricsServer:
    """HTTPS server of the external metrics API; ``await start()``, ``await stop()``."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        runner = web.AppRunner(build_app(self.registry, self.settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=self.settings.ssl_context())
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1]) if runner.addresses else self.settings.port
        log.info("external metrics API listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# ------------------------------------------------------------------ front-proxy CA from the cluster

AUTH_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


async def fetch_requestheader_auth(
    api_url: str | None = None, token: str | None = None, ca_file: str | None = None
) -> tuple[str, tuple[str, ...]]:
    """(front-proxy client CA PEM, allowed common names) from the cluster's authentication
    ConfigMap, read with the pod's service account (RBAC: the chart's auth-reader RoleBinding)."""
    if api_url is None:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        api_url = f"https://{host}:{port}"
    if token is None:
        token = (SA_DIR / "token").read_text().strip()
    ssl_ctx: ssl.SSLContext | bool = True
    if api_url.startswith("https://"):
        ssl_ctx = ssl.create_default_context(cafile=ca_file or str(SA_DIR / "ca.crt"))
    async with (
        ClientSession(timeout=ClientTimeout(total=10)) as session,
        session.get(f"{api_url}{AUTH_CONFIGMAP}", headers={"Authorization": f"Bearer {token}"}, ssl=ssl_ctx) as resp,
    ):
        resp.raise_for_status()
        return requestheader_auth((await resp.json()).get("data") or {})


def requestheader_auth(data: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """(front-proxy client CA PEM, allowed common names) from the data of the authentication ConfigMap."""
    ca = data.get("requestheader-client-ca-file")
    if not ca:
        raise RuntimeError("the cluster publishes no requestheader-client-ca-file (front proxy not configured)")
    names = tuple(json.loads(data.get("requestheader-allowed-names") or "[]"))
    return str(ca), names
