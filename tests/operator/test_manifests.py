"""Static checks: the builders' output, every manifest against Kubernetes' schemas (strict), the
examples against the CRD's own schema, printer columns, and the committed CRD against the models.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from jobqueue_operator import builders, crd
from jobqueue_operator.models import parse_spec
from jobqueue_operator.run import parse_args

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.37.0"
META = {"name": "jq1", "namespace": "ns1", "uid": "0b8c6a4e-0000-4000-8000-000000000001"}
EXAMPLES = sorted((ROOT / "examples").glob("jobqueue*.yaml"))


def children(spec: dict[str, Any], replicas: int = 2) -> list[dict[str, Any]]:
    return builders.build_children(META, parse_spec(spec), replicas, "job-queue-system:test")


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objs if o["kind"] == kind]
    return found


FULL = yaml.safe_load((ROOT / "examples" / "jobqueue-full.yaml").read_text())["spec"]


@pytest.mark.parametrize("spec", [{}, FULL], ids=["defaults", "full-example"])
def test_every_child_manifest_is_valid_kubernetes_strictly(spec: dict[str, Any]) -> None:
    for obj in children(spec):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_crd_is_valid_kubernetes_strictly() -> None:
    kubernetes_validate.validate(crd.build_crd(), K8S_VERSION, strict=True)


def test_the_committed_crd_is_what_the_models_generate() -> None:
    committed = (ROOT / "crds" / "jobqueue.yaml").read_text(encoding="utf-8")
    assert committed == crd.render_crd(), "crds/jobqueue.yaml drifted: run python hack/gen_crd.py"


def test_the_generator_script_checks_drift() -> None:
    spec = importlib.util.spec_from_file_location("gen_crd", ROOT / "hack" / "gen_crd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def schema() -> dict[str, Any]:
    return crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_examples_are_valid_against_the_crd_schema_and_the_models(path: Path) -> None:
    assert len(EXAMPLES) >= 2
    for doc in yaml.safe_load_all(path.read_text()):
        jsonschema.validate(doc, schema())
        spec = parse_spec(doc["spec"])
        for obj in builders.build_children({**META, "name": doc["metadata"]["name"]}, spec, 1):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_schema_rejects_what_the_models_reject() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"scaling": {"mode": "keda"}}}, schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"redis": {"port": 0}}}, schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"queues": []}}, schema())


def _jsonpath(obj: Any, path: str) -> Any:
    """The subset of kubectl JSONPath the printer columns use: .a.b and [?(@.k=="v")]."""
    for part in re.findall(r'\.([A-Za-z]+)|\[\?\(@\.(\w+)=="(\w+)"\)\]', path):
        name, key, value = part
        if name:
            obj = obj.get(name) if isinstance(obj, dict) else None
        else:
            obj = next((item for item in obj or [] if item.get(key) == value), None)
    return obj


def test_every_printer_column_resolves_on_a_sample_status_and_is_declared() -> None:
    sample = {
        "metadata": {"name": "jq1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"scaling": {"minReplicas": 0, "maxReplicas": 5, "mode": "builtin"}},
        "status": {
            "phase": "Running", "readyReplicas": 2, "desiredReplicas": 3,
            "queue": {"pending": 40, "inFlight": 8},
            "conditions": [{"type": "RedisReachable", "status": "True"}, {"type": "Ready", "status": "True"}],
        },
    }
    for column in crd.PRINTER_COLUMNS:
        assert _jsonpath(sample, column["jsonPath"]) is not None, column
    assert _jsonpath(sample, '.status.conditions[?(@.type=="Ready")].status') == "True"
    status_props = schema()["properties"]["status"]["properties"]
    assert {"queue", "readyReplicas", "desiredReplicas", "conditions", "busyWorkers", "selector",
            "lastScaleTime", "lastActiveTime", "observedGeneration", "phase", "replicas"} <= set(status_props)


def test_the_deployment_runs_the_worker_securely_with_probes_and_the_secret_password() -> None:
    spec = {"redis": {"auth": {"secretRef": {"name": "redis-auth", "usernameKey": "user"}}}}
    dep = by_kind(children(spec), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["job-queue-system"] and c["args"] == ["--role=worker", "--config=/config/config.yaml"]
    assert c["image"] == "job-queue-system:test"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
    assert env["REDIS_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "user"}
    assert pod["terminationGracePeriodSeconds"] == 35  # the runtime's 25 s shutdown timeout + 10
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == builders.selector_labels("jq1")


def test_the_configmap_renders_the_runtime_model_with_spec_fields_winning() -> None:
    spec = {"queues": ["a", "b", "c"], "worker": {"concurrency": 3, "handler": "app.jobs:run",
                                                  "config": {"worker": {"count": 99, "max_retries": 9}}},
            "redis": {"url": "rediss://cache:6380/2"}}
    cm = by_kind(children(spec), "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["queue_name"] == "jq1"
    assert config["worker"]["count"] == 3 and config["worker"]["max_retries"] == 9
    assert config["worker"]["priorities"] == ["a", "b", "c"] and config["producer"]["default_priority"] == "c"
    assert config["worker"]["handler"] == "app.jobs:run"
    assert config["redis"]["url"] == "rediss://cache:6380/2" and "password" not in config["redis"]


def test_a_config_change_changes_the_pod_template_hash_and_an_image_change_does_not() -> None:
    def config_hash(spec: dict[str, Any]) -> str:
        dep = by_kind(children(spec), "Deployment")
        return dep["spec"]["template"]["metadata"]["annotations"][builders.CONFIG_HASH_ANNOTATION]  # type: ignore[no-any-return]

    base = config_hash({})
    assert config_hash({"worker": {"image": "other:1"}}) == base
    assert config_hash({"worker": {"config": {"worker": {"max_retries": 1}}}}) != base


def test_pod_template_overrides_merge_and_cannot_break_the_selector() -> None:
    spec = {"worker": {"podTemplate": {
        "metadata": {"labels": {"app.kubernetes.io/name": "hijack", "team": "a"}},
        "spec": {"priorityClassName": "low", "containers": [{"name": "worker", "workingDir": "/tmp"},
                                                            {"name": "sidecar", "image": "busybox"}]},
    }}}
    dep = by_kind(children(spec), "Deployment")
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "a"
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "jobqueue-worker"
    worker, sidecar = template["spec"]["containers"]
    assert worker["workingDir"] == "/tmp" and worker["image"] == "job-queue-system:test"
    assert sidecar["name"] == "sidecar" and template["spec"]["priorityClassName"] == "low"


def test_the_service_exposes_the_metrics_port_of_the_workers() -> None:
    svc = by_kind(children({"worker": {"config": {"observability": {"metrics_port": 9100}}}}), "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == builders.selector_labels("jq1")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"worker": {"config": {"worker": {"max_retries": -1}}}}, "spec.worker.config: worker.max_retries"),
        ({"worker": {"config": {"nope": 1}}}, "spec.worker.config: nope: unknown key"),
        ({"worker": {"terminationGracePeriodSeconds": 20}}, "must exceed the runtime's worker.shutdown_timeout"),
        ({"worker": {"config": {"redis": {"password": "x"}}}}, "use spec.redis.auth.secretRef"),
    ],
)
def test_invalid_specs_are_reported_with_field_paths(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(builders.InvalidSpec) as err:
        children(spec)
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_the_spec_refuses_a_password_in_the_url() -> None:
    with pytest.raises(ValueError, match="must not contain a password"):
        parse_spec({"redis": {"url": "redis://user:secret@redis:6379/0"}})


def test_children_are_owned_by_the_jobqueue() -> None:
    for obj in children({}):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == META["uid"] and ref["controller"] is True and ref["kind"] == "JobQueue"


def test_builders_do_not_mutate_their_input() -> None:
    spec = copy.deepcopy(FULL)
    children(spec)
    assert spec == FULL


def test_run_args_default_to_standalone_all_namespaces_and_read_namespaces_from_env() -> None:
    args = parse_args(["--role=operator", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"], environ={})
    assert args.standalone and args.clusterwide and args.namespace == []
    args = parse_args([], environ={"JOBQUEUE_OPERATOR_WATCH_NAMESPACES": "a, b"})
    assert args.namespace == ["a", "b"] and not args.clusterwide
    args = parse_args(["-n", "x", "--namespace=y", "--peering"], environ={})
    assert args.namespace == ["x", "y"] and not args.standalone
