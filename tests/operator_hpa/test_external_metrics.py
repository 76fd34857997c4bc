"""The external metrics API over real HTTPS (mutual TLS as the kube-apiserver's front proxy does
it), with values read from a real Redis, and responses shaped as external.metrics.k8s.io/v1beta1
defines them (ExternalMetricValueList, APIResourceList, metav1.Status)."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from pki import Issued, Pki, client_ssl, issue, make_pki  # tests/support
from redis.asyncio import Redis

from jobqueue.broker import Broker, EnqueueItem
from jobqueue.clock import FakeClock
from jobqueue.keys import QueueKeys
from jobqueue_operator.external_metrics import (
    Counting,
    ExternalMetricsServer,
    Registry,
    Selector,
    Settings,
    fetch_requestheader_auth,
)

NS = "team-a"
BASE = "/apis/external.metrics.k8s.io/v1beta1"

# ------------------------------------------------------------------ certificates


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


# ------------------------------------------------------------------ queues in a real Redis


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


async def _seed(redis: Redis, clock: FakeClock, queue: str, *, pending: int, in_flight: int, due: int) -> Broker:
    broker = Broker(redis, QueueKeys(queue, ("high", "low")), clock)
    now = clock.now_ms()
    items = [EnqueueItem(f"{queue}-p{i}", "high" if i % 2 else "low", b"{}") for i in range(pending + in_flight)]
    items += [EnqueueItem(f"{queue}-d{i}", "low", b"{}", due_ms=now + 1000) for i in range(due)]
    assert all(await broker.enqueue(items))
    if in_flight:
        assert len(await broker.claim(in_flight, 60_000, "worker-1")) == in_flight
    return broker


@pytest.fixture
async def registry(redis: Redis, fake_clock: FakeClock) -> Registry:
    reg = Registry()
    emails = await _seed(redis, fake_clock, "emails", pending=5, in_flight=2, due=1)
    reports = await _seed(redis, fake_clock, "reports", pending=3, in_flight=4, due=0)
    other = await _seed(redis, fake_clock, "other", pending=9, in_flight=0, due=0)
    fake_clock.advance(2.0)  # the scheduled retry of "emails" is now due
    reg.register(NS, "emails", emails, labels={"tier": "gold"})
    reg.register(NS, "reports", reports, Counting(count_in_flight=False), labels={"tier": "bronze"})
    reg.register("team-b", "other", other)
    return reg


async def _server(registry: Registry, pki: Pki, **overrides: Any) -> ExternalMetricsServer:
    cert, key = pki.server.write(pki.dir, "server")
    settings = Settings(
        port=0,
        host="127.0.0.1",
        cert_file=cert,
        key_file=key,
        client_ca_pem=pki.front_proxy_ca.cert_pem.decode(),
        allowed_names=("front-proxy-client", "aggregator"),
    )
    settings = Settings(**{**settings.__dict__, **overrides})
    server = ExternalMetricsServer(registry, settings)
    await server.start()
    return server


@pytest.fixture
async def server(registry: Registry, pki: Pki) -> AsyncIterator[ExternalMetricsServer]:
    srv = await _server(registry, pki)
    yield srv
    await srv.stop()


async def get(server: ExternalMetricsServer, pki: Pki, path: str, client: Issued | None = None) -> tuple[int, Any]:
    ctx = client_ssl(pki, pki.proxy_client if client is None else client)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{server.port}{path}", ssl=ctx) as resp,
    ):
        return resp.status, await resp.json()


# ------------------------------------------------------------------ the API's shapes

QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
EXTERNAL_METRIC_VALUE_LIST = {
    "type": "object",
    "required": ["kind", "apiVersion", "metadata", "items"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "ExternalMetricValueList"},
        "apiVersion": {"const": "external.metrics.k8s.io/v1beta1"},
        "metadata": {"type": "object"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["metricName", "metricLabels", "timestamp", "value"],
                "additionalProperties": False,
                "properties": {
                    "metricName": {"type": "string"},
                    "metricLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
                    "window": {"type": "integer"},
                    "value": {"type": "string", "pattern": QUANTITY},
                },
            },
        },
    },
}


async def test_discovery_lists_the_metrics_as_namespaced_external_metric_value_lists(
    server: ExternalMetricsServer, pki: Pki
) -> None:
    code, body = await get(server, pki, BASE)
    assert code == 200
    assert body["kind"] == "APIResourceList" and body["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    names = {r["name"] for r in body["resources"]}
    assert "jobqueue_backlog" in names
    assert all(r["namespaced"] and r["kind"] == "ExternalMetricValueList" for r in body["resources"])
    code, group = await get(server, pki, "/apis/external.metrics.k8s.io")
    assert group["preferredVersion"]["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    code, groups = await get(server, pki, "/apis")
    assert [g["name"] for g in groups["groups"]] == ["external.metrics.k8s.io"]


async def test_backlog_of_one_jobqueue_counts_pending_in_flight_and_due_retries(
    server: ExternalMetricsServer, pki: Pki
) -> None:
    code, body = await get(
        server, pki, f"{BASE}/namespaces/{NS}/jobqueue_backlog?labelSelector=jobqueue.dev/name=emails"
    )
    assert code == 200
    jsonschema.validate(body, EXTERNAL_METRIC_VALUE_LIST)
    (item,) = body["items"]
    assert item["metricName"] == "jobqueue_backlog"
    assert item["value"] == "8"  # 5 pending + 2 in flight + 1 due retry
    assert item["metricLabels"] == {"jobqueue.dev/name": "emails", "jobqueue.dev/queue": "emails", "tier": "gold"}


async def test_count_in_flight_false_leaves_running_jobs_out(server: ExternalMetricsServer, pki: Pki) -> None:
    _, body = await get(server, pki, f"{BASE}/namespaces/{NS}/jobqueue_backlog?labelSelector=jobqueue.dev/name=reports")
    assert [i["value"] for i in body["items"]] == ["3"]
    _, body = await get(
        server, pki, f"{BASE}/namespaces/{NS}/jobqueue_in_flight?labelSelector=jobqueue.dev/name=reports"
    )
    assert [i["value"] for i in body["items"]] == ["4"]


async def test_selector_and_namespace_choose_the_series(server: ExternalMetricsServer, pki: Pki) -> None:
    _, everything = await get(server, pki, f"{BASE}/namespaces/{NS}/jobqueue_pending")
    assert [(i["metricLabels"]["jobqueue.dev/name"], i["value"]) for i in everything["items"]] == [
        ("emails", "5"),
        ("reports", "3"),
    ]
    _, gold = await get(server, pki, f"{BASE}/namespaces/{NS}/jobqueue_pending?labelSelector=tier%20in%20(gold,silver)")
    assert [i["metricLabels"]["jobqueue.dev/name"] for i in gold["items"]] == ["emails"]
    _, other = await get(server, pki, f"{BASE}/namespaces/team-b/jobqueue_backlog")
    assert [i["value"] for i in other["items"]] == ["9"]
    _, none = await get(server, pki, f"{BASE}/namespaces/nowhere/jobqueue_backlog")
    jsonschema.validate(none, EXTERNAL_METRIC_VALUE_LIST)
    assert none["items"] == []


async def test_values_follow_redis_at_request_time(server: ExternalMetricsServer, pki: Pki, redis: Redis) -> None:
    broker = server.registry.entries[(NS, "emails")].broker
    await broker.enqueue([EnqueueItem(f"late-{i}", "high", b"{}") for i in range(10)])
    _, body = await get(server, pki, f"{BASE}/namespaces/{NS}/jobqueue_backlog?labelSelector=jobqueue.dev/name=emails")
    assert body["items"][0]["value"] == "18"


async def test_unknown_metric_and_bad_selector_are_kubernetes_status_errors(
    server: ExternalMetricsServer, pki: Pki
) -> None:
    code, body = await get(server, pki, f"{BASE}/namespaces/{NS}/cpu_usage")
    assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404
    code, body = await get(server, pki, f"{BASE}/namespaces/{NS}/jobqueue_backlog?labelSelector=a%20in%20b")
    assert code == 400 and body["reason"] == "BadRequest"


async def test_redis_unreachable_gives_503_not_a_made_up_zero(server: ExternalMetricsServer, pki: Pki) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = Redis(host="127.0.0.1", port=dead_port, socket_connect_timeout=0.5)
    server.registry.register("team-c", "broken", Broker(dead, QueueKeys("broken", ("high",))))
    try:
        code, body = await get(server, pki, f"{BASE}/namespaces/team-c/jobqueue_backlog")
    finally:
        await dead.aclose()
    assert code == 503 and body["reason"] == "ServiceUnavailable"


async def test_requests_without_the_front_proxy_certificate_are_refused(
    server: ExternalMetricsServer, pki: Pki
) -> None:
    url = f"https://127.0.0.1:{server.port}{BASE}"
    for client in (None, pki.rogue_client):
        ctx = client_ssl(pki, client)
        async with aiohttp.ClientSession() as session:
            with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                async with session.get(url, ssl=ctx) as resp:
                    await resp.read()


async def test_a_front_proxy_ca_certificate_with_a_name_not_allowed_is_forbidden(
    server: ExternalMetricsServer, pki: Pki
) -> None:
    code, body = await get(server, pki, BASE, client=pki.wrong_name_client)
    assert code == 403 and body["reason"] == "Forbidden"


async def test_server_certificate_verifies_against_the_serving_ca(registry: Registry, pki: Pki) -> None:
    """A client trusting another CA (what the APIService caBundle would be if mismatched) fails."""
    srv = await _server(registry, pki, require_client_cert=False)
    try:
        other_ca = issue("other", ca=True)
        ctx = ssl.create_default_context(cadata=other_ca.cert_pem.decode())
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{srv.port}{BASE}", ssl=ctx)
        code, _ = await get(srv, pki, BASE, client=pki.rogue_client)  # no client CA check in this mode
        assert code == 200
    finally:
        await srv.stop()


def test_require_client_cert_without_a_ca_is_a_configuration_error(pki: Pki) -> None:
    cert, key = pki.server.write(pki.dir, "server")
    with pytest.raises(ValueError, match="client CA"):
        Settings(cert_file=cert, key_file=key).ssl_context()


def test_settings_come_from_the_environment_the_chart_sets() -> None:
    s = Settings.from_env(
        {
            "JOBQUEUE_EXTERNAL_METRICS_PORT": "8443",
            "JOBQUEUE_EXTERNAL_METRICS_CERT_DIR": "/certs",
            "JOBQUEUE_EXTERNAL_METRICS_REQUIRE_CLIENT_CERT": "false",
        }
    )
    assert (s.port, s.cert_file, s.key_file, s.require_client_cert) == (8443, "/certs/tls.crt", "/certs/tls.key", False)
    assert Settings.from_env({}).require_client_cert is True


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("", {"a": "1"}, True),
        ("a=1", {"a": "1"}, True),
        ("a==1,b=2", {"a": "1", "b": "3"}, False),
        ("a!=1", {}, True),
        ("a!=1", {"a": "1"}, False),
        ("jobqueue.dev/name=emails", {"jobqueue.dev/name": "emails"}, True),
        ("a in (1, 2)", {"a": "2"}, True),
        ("a notin (1,2)", {"a": "3"}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
    ],
)
def test_label_selector_semantics(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert Selector.parse(selector).matches(labels) is matches


async def test_front_proxy_ca_is_read_from_the_cluster_auth_configmap() -> None:
    seen: dict[str, str] = {}

    async def configmap(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization", "")
        seen["path"] = request.path
        data = {
            "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
            "requestheader-allowed-names": '["front-proxy-client"]',
        }
        return web.json_response({"kind": "ConfigMap", "data": data})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", configmap)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        ca, names = await fetch_requestheader_auth(f"http://127.0.0.1:{port}", token="t0ken")
    finally:
        await runner.cleanup()
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    assert names == ("front-proxy-client",)
    assert seen == {
        "auth": "Bearer t0ken",
        "path": "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
    }


def test_module_stays_small() -> None:
    source = Path(__file__).resolve().parents[2] / "operator" / "jobqueue_operator" / "external_metrics.py"
    assert len(source.read_text().splitlines()) <= 400
    assert re.search(r"^import kopf", source.read_text(), re.M) is None, "served without kopf; the operator wires it"
