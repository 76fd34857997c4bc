"""The shipped Grafana dashboard and Prometheus alerts: well-formed, valid PromQL (promtool, when
the Debian ``prometheus`` package is installed), and using only metrics that /metrics serves."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from redis_server import RedisServer
from support_obs import get

from jobqueue.broker import Broker
from jobqueue.collector import QueueCollector
from jobqueue.health import Health, HttpServer
from jobqueue.keys import QueueKeys
from jobqueue.metrics import Metrics

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "jobqueue.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_KEYWORDS |= {"inf", "nan", "le", "queue", "instance", "op"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a small tokenizer, enough for our queries)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = m.group(0)
        follows = text[m.end() :].lstrip()[:1]
        if follows == "(" or name.lower() in _KEYWORDS or name.startswith("__"):
            continue  # a function, a keyword or a label name
        names.add(name)
    return names


def dashboard_exprs(dash: dict[str, Any]) -> Iterator[str]:
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


async def _served(url: str) -> set[str]:
    """Metric names of a /metrics served the way a worker process serves it."""
    redis = Redis.from_url(url)
    metrics = Metrics(process_metrics=True)
    metrics.preset(["high", "low"], ("dispatch",))
    collector = QueueCollector(Broker(redis, QueueKeys("deploy", ("high", "low"))), 0.0, metrics)
    metrics.registry.register(collector)
    server = HttpServer(
        "127.0.0.1", 0, metrics.registry, Health(redis.ping), collector=collector, ready_gauge=metrics.ready
    )
    await server.start()
    try:
        status, text = await get(f"http://127.0.0.1:{server.bound_port}/metrics")
    finally:
        await server.stop()
        await redis.aclose()
    assert status == 200
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_dashboard_is_well_formed_json_with_unique_panels() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "jobqueue" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]


def test_the_alert_rules_cover_what_an_sre_must_be_paged_for() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
    breaker = rules["JobQueueCircuitBreakerNotClosed"]
    assert "circuit_breaker_state" in breaker["expr"] and "> 0" in breaker["expr"] and breaker["for"] == "60s"
    failure = rules["JobQueueHighFailureRate"]
    assert {"jobs_failed_total", "jobs_consumed_total"} <= metric_names(failure["expr"])
    assert "[5m]" in failure["expr"] and "0.10" in failure["expr"]
    assert "dead_letter_length" in rules["JobQueueDeadLetterGrowing"]["expr"]
    ready = rules["JobQueueNotReady"]
    assert ready["expr"] == "jobqueue_ready == 0" and ready["for"] == "30s"
    assert "queue_oldest_job_age_seconds" in rules["JobQueueOldestJobTooOld"]["expr"]


def test_every_metric_the_dashboard_and_alerts_use_is_served(redis_server: RedisServer) -> None:
    with ThreadPoolExecutor(1) as pool:  # its own loop, in a thread: the test's loop state stays untouched
        served_names = pool.submit(asyncio.run, _served(redis_server.url)).result()
    used = set()
    for expr in [*dashboard_exprs(json.loads(DASHBOARD.read_text())), *(r["expr"] for r in alert_rules())]:
        used |= metric_names(expr)
    assert used - served_names == set()
    assert {"queue_length", "jobs_completed_total", "job_processing_duration_seconds_bucket"} <= used


def test_metric_names_are_read_from_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, queue) (rate(x_bucket{queue="a"}[5m]))) / on() max(y) > 0.1'
    assert metric_names(expr) == {"x_bucket", "y"}


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package 'prometheus'); YAML shape and metric names are still checked",
)
def test_promtool_accepts_the_alerts_and_the_dashboards_queries(tmp_path: Path) -> None:
    run = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # The dashboard's queries, as recording rules, so promtool parses every one of them.
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs(json.loads(DASHBOARD.read_text()))]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    run = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
