"""spec.scaling.mode hpa with the real operator against KMock: the HPA it owns, and the external
metrics API it serves over mutual TLS with the backlog read from a real Redis."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
from jq_kmock import JQ, NS, Emulator, eventually, get, operator_requests, running_operator
from pki import Issued, Pki, client_ssl, make_pki
from redis.asyncio import Redis
from redis_server import RedisServer, free_port
from test_operator_kmock import create, enqueue, jobqueue, must, patch_spec

from jobqueue_operator import rbac
from jobqueue_operator.handlers import metrics_api

HPAS = "autoscaling/v2/horizontalpodautoscalers"
BASE = "/apis/external.metrics.k8s.io/v1beta1"


async def test_hpa_mode_creates_an_owned_hpa_and_builtin_mode_deletes_it(
    operator: Emulator, redis_server: RedisServer
) -> None:
    await create(operator, jobqueue("web", redis_server.port,
                                    scaling={"mode": "hpa", "minReplicas": 2, "targetJobsPerWorker": 10}))
    hpa = await eventually(lambda: get(operator, HPAS, "web"))
    kubernetes_validate.validate({k: v for k, v in hpa.items() if k != "status"}, "1.25.0", strict=True)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "jobqueue.dev/v1alpha1", "kind": "JobQueue", "name": "web"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    (metric,) = hpa["spec"]["metrics"]
    assert metric == {
        "type": "External",
        "external": {
            "metric": {"name": "jobqueue_backlog", "selector": {"matchLabels": {"jobqueue.dev/name": "web"}}},
            "target": {"type": "AverageValue", "averageValue": "10"},
        },
    }
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 0}}
    (owner,) = hpa["metadata"]["ownerReferences"]
    assert owner["uid"] == must(operator, JQ, "web")["metadata"]["uid"]
    assert owner["controller"] is True and owner["kind"] == "JobQueue"

    await patch_spec(operator, "web", {"scaling": {"maxReplicas": 9}})
    await eventually(lambda: (h := get(operator, HPAS, "web")) and h["spec"]["maxReplicas"] == 9)
    await patch_spec(operator, "web", {"scaling": {"mode": "builtin"}})
    await eventually(lambda: get(operator, HPAS, "web") is None)
    assert ("autoscaling", "horizontalpodautoscalers", "delete") in operator_requests(operator)
    assert sorted(c for c in operator_requests(operator) if not rbac.covers(*c)) == []


async def test_an_hpa_someone_else_owns_is_left_alone_in_builtin_mode(
    operator: Emulator, redis_server: RedisServer
) -> None:
    theirs = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
              "metadata": {"name": "mine", "namespace": NS}, "spec": {"maxReplicas": 3}}
    operator.objects[HPAS, NS, "mine"] = theirs
    await create(operator, jobqueue("mine", redis_server.port))
    await eventually(lambda: get(operator, "apps/v1/deployments", "mine-worker"))
    await eventually(lambda: (must(operator, JQ, "mine").get("status") or {}).get("queue"))
    assert get(operator, HPAS, "mine") is not None


# ------------------------------------------------------------------ the external metrics API


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with make_pki() as made:
        yield made


@pytest.fixture
async def metrics_operator(
    k8s: Emulator, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Emulator, int]]:
    """The operator with the environment the chart sets when externalMetrics.enabled, and the
    cluster's front-proxy CA published in kube-system as a real cluster does."""
    pki.server.write(pki.dir, "tls")
    port = free_port()
    monkeypatch.setenv(metrics_api.ENABLE_ENV, str(port))
    monkeypatch.setenv("JOBQUEUE_EXTERNAL_METRICS_CERT_DIR", str(pki.dir))
    monkeypatch.setenv("JOBQUEUE_EXTERNAL_METRICS_REQUIRE_CLIENT_CERT", "true")
    k8s.objects["v1/configmaps", "kube-system", "extension-apiserver-authentication"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "requestheader-client-ca-file": pki.front_proxy_ca.cert_pem.decode(),
            "requestheader-allowed-names": '["front-proxy-client"]',
        },
    }
    async with running_operator(k8s) as running:
        yield running, port


async def fetch(port: int, pki: Pki, path: str, client: Issued | None = None) -> tuple[int, Any]:
    ctx: ssl.SSLContext = client_ssl(pki, client or pki.proxy_client)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{port}{path}", ssl=ctx) as resp,
    ):
        return resp.status, await resp.json()


async def test_the_operator_serves_the_backlog_of_a_jobqueue_from_redis_over_mutual_tls(
    metrics_operator: tuple[Emulator, int], pki: Pki, redis_server: RedisServer, redis: Redis
) -> None:
    k8s, port = metrics_operator
    await create(k8s, jobqueue("emails", redis_server.port, scaling={"mode": "hpa"}))
    await enqueue(redis, "emails", 7)
    path = f"{BASE}/namespaces/{NS}/jobqueue_backlog?labelSelector=jobqueue.dev/name%3Demails"

    async def backlog() -> str | None:
        code, body = await fetch(port, pki, path)
        return body["items"][0]["value"] if code == 200 and body["items"] else None

    assert await eventually(backlog) == "7"
    code, body = await fetch(port, pki, path)
    (item,) = body["items"]
    assert item["metricLabels"] == {"jobqueue.dev/name": "emails", "jobqueue.dev/queue": "emails"}
    await enqueue(redis, "emails", 3, prefix="more")
    assert (await fetch(port, pki, path))[1]["items"][0]["value"] == "10"  # read at request time
    # The allowed names came from the cluster's ConfigMap too.
    code, body = await fetch(port, pki, BASE, client=pki.wrong_name_client)
    assert code == 403 and body["reason"] == "Forbidden"
    assert ("", "configmaps", "get") in operator_requests(k8s)

    resp = await k8s.delete(f"/apis/jobqueue.dev/v1alpha1/namespaces/{NS}/jobqueues/emails")
    assert resp.status < 300
    await eventually(lambda: get(k8s, JQ, "emails") is None)

    async def gone() -> bool:
        code, body = await fetch(port, pki, path)
        return code == 200 and body["items"] == []

    assert await eventually(gone)


async def test_the_external_metrics_api_is_off_unless_the_chart_enables_it(
    operator: Emulator, redis_server: RedisServer
) -> None:
    assert not metrics_api.enabled()
    await create(operator, jobqueue("plain", redis_server.port))
    await eventually(lambda: get(operator, "apps/v1/deployments", "plain-worker"))
    assert not any(r.url.path.startswith("/api/v1/namespaces/kube-system") for r in operator._requests)
