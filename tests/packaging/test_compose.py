"""deploy/docker-compose.yml and the files it mounts, checked without a Docker engine.

The compose file is parsed by compose-spec (bindings to the Rust ``compose_spec`` crate, a strict
parser of the Compose Specification that rejects unknown keys), then cross-checked: every path it
mounts or builds from exists, services depend on services that exist, Prometheus scrapes the
services compose defines, and every environment variable it sets is a real config override.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyOptions

from jobqueue.config import build_config, env_overrides

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
APP_SERVICES = ("app-all", "app-worker", "app-producer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed = PyOptions(apply_merge=True).from_yaml(COMPOSE.read_text())
    parsed.validate()  # every named volume/network/config/secret a service uses is declared
    return parsed.to_dict()


def _short_volume_source(spec: str | dict[str, Any]) -> str:
    if isinstance(spec, dict):
        return str(spec.get("source", ""))
    return spec.split(":", 1)[0]


def test_compose_defines_redis_and_every_role(compose: dict[str, Any]) -> None:
    assert {"redis", *APP_SERVICES, "prometheus", "grafana"} <= set(compose["services"])
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
    assert compose["services"]["grafana"]["profiles"] == ["monitoring"]


def test_app_services_wait_for_a_healthy_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["redis"]["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    assert any(_short_volume_source(v) == "redis-data" for v in services["redis"]["volumes"])
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_every_dependency_names_a_defined_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_every_host_path_compose_references_exists(compose: dict[str, Any]) -> None:
    checked = 0
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
            checked += 1
        for vol in svc.get("volumes", []):
            source = _short_volume_source(vol)
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
                checked += 1
        for env_file in svc.get("env_file", []):
            assert (DEPLOY / (env_file if isinstance(env_file, str) else env_file["path"])).is_file()
    assert checked >= 8


def test_app_services_keep_the_secure_defaults(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        svc = compose["services"][name]
        assert svc["user"] == "10001:10001"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"]
        assert svc["command"] == [f"--role={name.removeprefix('app-')}"]


def _known_override(name: str) -> bool:
    return bool(env_overrides({name: "x"}))


def test_compose_environment_is_made_of_valid_config_overrides(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        unknown = [k for k in env if not _known_override(k)]
        assert not unknown, f"{name}: not config overrides: {unknown}"
        build_config(environ=env)  # and their values validate


def test_env_list_example_is_made_of_valid_config_overrides() -> None:
    env: dict[str, str] = {}
    for raw in (ROOT / "env.list.example").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"docker --env-file line: {line!r}"
        key, _, value = line.partition("=")
        env[key] = value
    assert "REDIS_ADDR" in env
    unknown = [k for k in env if not _known_override(k)]
    assert not unknown, unknown
    cfg = build_config(environ=env)
    assert cfg.redis.addr == env["REDIS_ADDR"]
    # The commented-out lines must be valid too once uncommented.
    commented = re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (ROOT / "env.list.example").read_text(), re.M)
    assert commented and all(_known_override(k) for k in commented)


def test_prometheus_scrapes_the_compose_services_and_loads_the_alert_rules(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    for target in targets:
        host, _, port = target.partition(":")
        assert host == "localhost" or host in compose["services"], target
        assert port == "9090"
    assert {t.partition(":")[0] for t in targets} >= set(APP_SERVICES)
    mounts = [v for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./prometheus:")]
    assert mounts == ["./prometheus:/etc/prometheus:ro"]
    assert prom["rule_files"] == ["/etc/prometheus/alerts*.yaml"]


def test_grafana_provisioning_points_at_the_shipped_dashboard_and_prometheus(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "jobqueue.yaml").read_text())
    (provider,) = prov["providers"]
    # The provider's path in the container is the mount of deploy/grafana/, where jobqueue.json lives.
    assert mounts["./grafana"] == provider["options"]["path"]
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = DEPLOY / "grafana" / "jobqueue.json"
    if dashboard.exists():  # written by the observability issue
        assert isinstance(json.loads(dashboard.read_text()), dict)
