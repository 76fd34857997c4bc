"""The real kopf operator, in-process, against KMock's KubernetesEmulator and a private Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jq_kmock import (
    CONFIGMAPS,
    DEPLOYMENTS,
    JQ,
    NS,
    SERVICES,
    Emulator,
    events,
    eventually,
    get,
    operator_requests,
    running_operator,
)
from redis.asyncio import Redis
from redis_server import RedisServer, free_port

from jobqueue.broker import Broker, EnqueueItem
from jobqueue.keys import QueueKeys
from jobqueue_operator import rbac

JQ_URL = f"/apis/jobqueue.dev/v1alpha1/namespaces/{NS}/jobqueues"


def jobqueue(name: str, port: int, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"host": "127.0.0.1", "port": port},
        "worker": {"image": "job-queue-system:test", "concurrency": 4},
        "scaling": {
            "minReplicas": 1,
            "maxReplicas": 5,
            "pollIntervalSeconds": 0.1,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


async def create(k8s: Emulator, body: dict[str, Any]) -> None:
    resp = await k8s.post(JQ_URL, json=body)
    assert resp.status < 300, await resp.text()


async def patch_spec(k8s: Emulator, name: str, spec: dict[str, Any]) -> None:
    resp = await k8s.patch(
        f"{JQ_URL}/{name}", json={"spec": spec}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert resp.status < 300, await resp.text()


def must(k8s: Emulator, resource: str, name: str) -> dict[str, Any]:
    obj = get(k8s, resource, name)
    assert obj is not None, f"{resource} {name} does not exist"
    return obj


def status(k8s: Emulator, name: str) -> dict[str, Any]:
    return (get(k8s, JQ, name) or {}).get("status") or {}


def condition(k8s: Emulator, name: str, type_: str) -> dict[str, Any]:
    for c in status(k8s, name).get("conditions", []):
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def replicas(k8s: Emulator, name: str) -> int | None:
    dep = get(k8s, DEPLOYMENTS, f"{name}-worker")
    return None if dep is None else int(dep["spec"]["replicas"])


def queue(redis: Redis, name: str) -> Broker:
    return Broker(redis, QueueKeys(name, ("high", "low")))


async def enqueue(redis: Redis, name: str, n: int, prefix: str = "j") -> None:
    await queue(redis, name).enqueue([EnqueueItem(f"{prefix}{i}", "high", b"{}") for i in range(n)])


async def test_a_jobqueue_gets_an_owned_configmap_deployment_and_service(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(operator, jobqueue("jq1", redis_server.port))
    svc = await eventually(lambda: get(operator, SERVICES, "jq1-metrics"))  # the last one applied
    dep = get(operator, DEPLOYMENTS, "jq1-worker")
    cm = get(operator, CONFIGMAPS, "jq1-worker-config")
    assert cm is not None and dep is not None
    uid = must(operator, JQ, "jq1")["metadata"]["uid"]
    for child in (dep, cm, svc):
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "name": "jq1",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "job-queue-system:test"
    assert container["args"] == ["--role=worker", "--config=/config/config.yaml"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "queue_name: jq1" in cm["data"]["config.yaml"]
    assert f"addr: 127.0.0.1:{redis_server.port}" in cm["data"]["config.yaml"]
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    await eventually(lambda: condition(operator, "jq1", "Ready").get("status") == "True")
    await eventually(lambda: condition(operator, "jq1", "RedisReachable").get("status") == "True")
    # The reconcile handler's status write can land before the autoscaler's first report.
    await eventually(lambda: status(operator, "jq1").get("desiredReplicas") == 1)
    st = status(operator, "jq1")
    assert st["selector"] == "app.kubernetes.io/name=jobqueue-worker,app.kubernetes.io/instance=jq1"
    assert st["observedGeneration"] >= 1 and st["desiredReplicas"] == 1
    assert must(operator, JQ, "jq1")["spec"]["replicas"] == 1
    assert "jobqueue.dev/finalizer" in must(operator, JQ, "jq1")["metadata"]["finalizers"]


async def test_jobs_raise_replicas_and_status_then_draining_returns_to_min_and_then_to_zero(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(
        operator, jobqueue("burst", redis_server.port, scaling={"minReplicas": 0, "scaleToZeroDelaySeconds": 0.5})
    )
    await eventually(lambda: status(operator, "burst").get("queue") is not None)
    assert replicas(operator, "burst") == 0
    await enqueue(redis, "burst", 18)  # 18 jobs / 4 per worker -> 5 (max 5)
    await eventually(lambda: replicas(operator, "burst") == 5)
    await eventually(lambda: status(operator, "burst").get("queue", {}).get("pending") == 18)
    assert status(operator, "burst")["desiredReplicas"] == 5
    assert must(operator, JQ, "burst")["spec"]["replicas"] == 5
    (up,) = await eventually(lambda: events(operator, "ScaledUp"))
    assert up["message"].startswith("from 0 to 5: up: backlog 18 / 4 per worker") and up["type"] == "Normal"
    assert condition(operator, "burst", "Active")["status"] == "True"

    b = queue(redis, "burst")
    held = [*await b.claim(4, 30_000, "worker-a"), *await b.claim(2, 30_000, "worker-b")]
    await b.run(b.promote_call())  # nothing due; keeps the script cache warm
    for p in ("high", "low"):
        await redis.delete(b.keys.pending(p))  # the rest is "done elsewhere"; 6 stay in flight
    await eventually(lambda: replicas(operator, "burst") == 2)  # 6 in flight / 4 -> 2, busy 2
    await eventually(lambda: status(operator, "burst").get("busyWorkers") == 2)
    await b.ack([(j.id, j.token, 5) for j in held])
    await eventually(lambda: replicas(operator, "burst") == 1)  # idle, but inside the zero delay
    await eventually(lambda: replicas(operator, "burst") == 0, timeout=5)
    await eventually(lambda: status(operator, "burst").get("phase") == "Idle")
    await eventually(lambda: any(e["message"].startswith("from 1 to 0") for e in events(operator, "ScaledDown")))
    assert status(operator, "burst")["lastActiveTime"] and status(operator, "burst")["lastScaleTime"]


async def test_waking_from_zero_follows_the_enqueue_signal_not_the_poll_interval(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(operator, jobqueue("wake", redis_server.port, scaling={"minReplicas": 0, "pollIntervalSeconds": 60}))
    await eventually(lambda: status(operator, "wake").get("queue") is not None)  # first poll done
    channel = queue(redis, "wake").keys.events_channel

    async def subscribed() -> bool:
        return bool((await redis.pubsub_numsub(channel))[0][1])

    await eventually(subscribed)
    started = time.monotonic()
    await enqueue(redis, "wake", 1)
    await eventually(lambda: replicas(operator, "wake") == 1, timeout=5)
    elapsed = time.monotonic() - started
    print(f"woke from zero in {elapsed * 1000:.0f} ms (poll interval 60 s)")
    assert elapsed < 5


async def test_a_spec_change_patches_the_deployment_and_a_config_change_rolls_it(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(operator, jobqueue("chg", redis_server.port))
    dep = await eventually(lambda: get(operator, DEPLOYMENTS, "chg-worker"))
    config_hash = dep["spec"]["template"]["metadata"]["annotations"]["jobqueue.dev/config-hash"]
    await patch_spec(operator, "chg", {"worker": {"image": "job-queue-system:v2"}})
    dep = await eventually(
        lambda: (
            (d := get(operator, DEPLOYMENTS, "chg-worker"))
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == "job-queue-system:v2"
            and d
        )
    )
    assert dep["spec"]["template"]["metadata"]["annotations"]["jobqueue.dev/config-hash"] == config_hash
    await patch_spec(operator, "chg", {"worker": {"config": {"worker": {"max_retries": 7}}}})
    cm = await eventually(
        lambda: (
            (c := get(operator, CONFIGMAPS, "chg-worker-config")) and "max_retries: 7" in c["data"]["config.yaml"] and c
        )
    )
    assert cm
    dep = await eventually(
        lambda: (
            (d := get(operator, DEPLOYMENTS, "chg-worker"))
            and d["spec"]["template"]["metadata"]["annotations"]["jobqueue.dev/config-hash"] != config_hash
            and d
        )
    )
    await patch_spec(operator, "chg", {"replicas": 3, "scaling": {"paused": True}})  # kubectl scale, paused
    await eventually(lambda: replicas(operator, "chg") == 3)
    await eventually(lambda: condition(operator, "chg", "Paused").get("status") == "True")


async def test_an_unchanged_spec_patches_nothing_when_the_operator_restarts(
    k8s: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    async with running_operator(k8s):
        await create(k8s, jobqueue("same", redis_server.port))
        await eventually(lambda: condition(k8s, "same", "Ready").get("status") == "True")
    before = len(k8s._requests)
    async with running_operator(k8s):
        await eventually(
            lambda: any(
                r.resource is not None and r.resource.plural == "deployments" and r.method == "GET"
                for r in k8s._requests[before:]
            )
        )
        await eventually(lambda: status(k8s, "same").get("queue") is not None)
    writes = [
        (r.method, str(r.url))
        for r in k8s._requests[before:]
        if r.resource is not None
        and r.resource.plural in ("deployments", "configmaps", "services")
        and r.method != "GET"
    ]
    assert writes == []


async def test_an_invalid_spec_sets_a_condition_and_an_event_and_is_not_retried(
    operator: Emulator, redis_server: RedisServer
) -> None:
    await create(operator, jobqueue("bad", redis_server.port, scaling={"minReplicas": 4, "maxReplicas": 2}))
    await eventually(lambda: condition(operator, "bad", "Ready").get("reason") == "InvalidSpec")
    assert "minReplicas 4 exceeds maxReplicas 2" in condition(operator, "bad", "Ready")["message"]
    assert status(operator, "bad")["phase"] == "Invalid"
    (ev,) = await eventually(lambda: events(operator, "InvalidSpec"))
    assert ev["type"] == "Warning"
    # Permanent: kopf records this spec as handled (no retry) in our annotation.
    handled = await eventually(
        lambda: must(operator, JQ, "bad")["metadata"]["annotations"].get("jobqueue.dev/last-handled-configuration")
    )
    assert json.loads(handled)["spec"]["scaling"]["minReplicas"] == 4
    assert get(operator, DEPLOYMENTS, "bad-worker") is None
    await patch_spec(operator, "bad", {"scaling": {"minReplicas": 1}})
    await eventually(lambda: get(operator, DEPLOYMENTS, "bad-worker"))
    await eventually(lambda: condition(operator, "bad", "Ready").get("status") == "True")


async def test_an_unreachable_redis_keeps_replicas_and_reports_it(
    operator: Emulator, redis_server: RedisServer
) -> None:
    await create(operator, jobqueue("down", free_port(), scaling={"minReplicas": 2}))
    await eventually(lambda: condition(operator, "down", "RedisReachable").get("status") == "False")
    await eventually(lambda: replicas(operator, "down") == 2)
    await eventually(lambda: condition(operator, "down", "Ready").get("reason") == "RedisUnreachable")
    assert status(operator, "down")["phase"] == "Degraded"
    await eventually(lambda: events(operator, "RedisUnreachable"))
    await patch_spec(operator, "down", {"redis": {"port": redis_server.port}})
    await eventually(lambda: condition(operator, "down", "RedisReachable").get("status") == "True")
    assert len(events(operator, "RedisUnreachable")) == 1  # one Event per outage, not per poll


async def test_hpa_mode_and_paused_leave_replicas_alone(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(operator, jobqueue("hpa", redis_server.port, scaling={"mode": "hpa"}))
    await create(operator, jobqueue("frozen", redis_server.port, scaling={"paused": True}))
    await enqueue(redis, "hpa", 20)
    await enqueue(redis, "frozen", 20)
    await eventually(lambda: status(operator, "hpa").get("queue", {}).get("pending") == 20)
    await eventually(lambda: status(operator, "frozen").get("queue", {}).get("pending") == 20)
    assert replicas(operator, "hpa") == 1 and replicas(operator, "frozen") == 1
    assert condition(operator, "frozen", "Paused")["status"] == "True"
    await patch_spec(operator, "hpa", {"replicas": 4})  # what the HPA does through the scale subresource
    await eventually(lambda: replicas(operator, "hpa") == 4)
    await eventually(lambda: status(operator, "hpa").get("desiredReplicas") == 4)


@pytest.fixture
async def password_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer().start()  # its start-up PING needs no password; require one from now on
    admin = Redis(host="127.0.0.1", port=server.port)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    yield server
    server.cleanup()


async def test_auth_comes_from_the_secret_and_deleting_the_jobqueue_releases_it(
    operator: Emulator, password_redis: RedisServer
) -> None:
    operator.objects["v1/secrets", NS, "redis-auth"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "redis-auth", "namespace": NS},
        "data": {"password": base64.b64encode(b"s3cret").decode()},
    }
    await create(operator, jobqueue("auth", password_redis.port, redis={"auth": {"secretRef": {"name": "redis-auth"}}}))
    dep = await eventually(lambda: get(operator, DEPLOYMENTS, "auth-worker"))
    assert dep is not None
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}} in env
    assert "s3cret" not in json.dumps(dep) + json.dumps(get(operator, CONFIGMAPS, "auth-worker-config"))
    await eventually(lambda: condition(operator, "auth", "RedisReachable").get("status") == "True")

    client = Redis(host="127.0.0.1", port=password_redis.port, password="s3cret")
    try:
        clients = await client.client_list()
        assert any(c["name"] == "jobqueue-operator" for c in clients)
        resp = await operator.delete(f"{JQ_URL}/auth")
        assert resp.status < 300
        await eventually(lambda: get(operator, JQ, "auth") is None)  # finalizer released
        assert await eventually(lambda: _no_operator_clients(client), timeout=5)  # the daemon closed Redis
    finally:
        await client.aclose()


async def _no_operator_clients(client: Redis) -> bool:
    return not any(c["name"] == "jobqueue-operator" for c in await client.client_list())


async def test_every_api_call_the_operator_made_is_covered_by_the_rbac_rules(
    operator: Emulator, redis_server: RedisServer, redis: Redis
) -> None:
    await create(operator, jobqueue("rbac", redis_server.port, scaling={"minReplicas": 0}))
    await enqueue(redis, "rbac", 3)
    await eventually(lambda: replicas(operator, "rbac") == 1)
    await eventually(lambda: events(operator, "ScaledUp"))
    calls = operator_requests(operator)
    assert {
        ("apps", "deployments", "create"),
        ("apps", "deployments", "patch"),
        ("jobqueue.dev", "jobqueues/status", "patch"),
        ("", "events", "create"),
    } <= calls
    uncovered = sorted(c for c in calls if not rbac.covers(*c))
    assert uncovered == []


async def test_run_main_logs_in_with_a_kubeconfig_serves_liveness_and_stops_cleanly_on_sigterm(
    k8s: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The `job-queue-system --role=operator` entry point, as a process: kubeconfig login, standalone."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(k8s.url).rstrip("/")}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u", "namespace": NS}}],
    }))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from jobqueue_operator.run import main; sys.exit(main(sys.argv[1:]))",
        "--role=operator", "--standalone", f"--namespace={NS}", f"--liveness=http://127.0.0.1:{port}/healthz",
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "JOBQUEUE_WORKER_IMAGE": "from-env:1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        body = jobqueue("proc", redis_server.port)
        del body["spec"]["worker"]["image"]  # the operator's JOBQUEUE_WORKER_IMAGE applies
        await create(k8s, body)
        dep = await eventually(lambda: get(k8s, DEPLOYMENTS, "proc-worker"), timeout=20)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "from-env:1"

        async def live() -> bool:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as r:
                return r.status == 200

        assert await eventually(live)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert "Traceback" not in output, output[-3000:]
