"""charts/jobqueue: lint, render offline with default and non-default values, validate every
manifest against the Kubernetes schemas (kubernetes-validate, strict), and check the promises
the chart makes: secure defaults, a values file with every key commented, a schema that rejects
wrong types, and a TLS-served external metrics APIService.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from chart_support import CHART, KUBE_VERSIONS, NAMESPACE, VALUE_SETS, find, manifests, render
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CORE_KINDS_ONLY = ("JobQueue",)  # custom resources: checked against the CRD, not kubernetes-validate


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, manifests(VALUE_SETS[request.param])


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_rendered_manifest_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]], kube: str) -> None:
    _, objs = rendered
    assert objs
    for obj in objs:
        if obj["kind"] in CORE_KINDS_ONLY:
            continue
        try:
            kubernetes_validate.validate(obj, kube, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {kube}: {err.message}")


def test_every_object_carries_the_chart_labels_and_a_namespace_where_namespaced(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objs = rendered
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "APIService"}
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", obj["metadata"]["name"]
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace"), f"{obj['kind']}/{obj['metadata']['name']}"


def _operator(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (dep,) = [
        d for d in find(objs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    return dep


def _containers(dep: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dep["spec"]["template"]["spec"]["containers"])


def test_deployments_run_non_root_with_a_read_only_root_and_no_capabilities(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objs = rendered
    deployments = find(objs, "Deployment")
    assert deployments
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in _containers(dep):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_operator_runs_one_replica_recreated_with_a_kopf_liveness_probe(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objs = rendered
    dep = _operator(objs)
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = _containers(dep)
    assert c["args"][:2] == ["--role=operator", "--standalone"]
    port = VALUE_SETS[name].get("operator", {}).get("healthPort", 8080)
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": port, "protocol": "TCP"} in c["ports"]
    namespaces = VALUE_SETS[name].get("operator", {}).get("watchNamespaces", [])
    if namespaces:
        assert [a for a in c["args"] if a.startswith("--namespace=")] == [f"--namespace={n}" for n in namespaces]
    else:
        assert "--all-namespaces" in c["args"]
    image = VALUE_SETS[name].get("image", {})
    assert c["image"] == f"{image.get('repository', 'job-queue-system')}:{image.get('tag', '0.1.0')}"
    assert ("--verbose" in c["args"]) is (VALUE_SETS[name].get("operator", {}).get("logLevel") == "debug")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["OBSERVABILITY_LOG_LEVEL"] == VALUE_SETS[name].get("operator", {}).get("logLevel", "info")


def _pem(b64: str) -> bytes:
    return base64.b64decode(b64)


@pytest.mark.parametrize("name", ["defaults", "namespaced-with-redis-and-hpa-example"])
def test_external_metrics_apiservice_is_served_over_tls_by_the_operator_service(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    (api,) = find(objs, "APIService")
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    spec = api["spec"]
    assert (spec["group"], spec["version"]) == ("external.metrics.k8s.io", "v1beta1")
    assert spec["insecureSkipTLSVerify"] is False
    (svc,) = find(objs, "Service", spec["service"]["name"])
    assert svc["metadata"]["namespace"] == spec["service"]["namespace"] == NAMESPACE
    (port,) = svc["spec"]["ports"]
    assert port["port"] == spec["service"]["port"] and port["targetPort"] == "metrics-api"
    # The Service selects the operator pod, which exposes the named port and mounts the cert.
    dep = _operator(objs)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (c,) = _containers(dep)
    assert any(p["name"] == "metrics-api" for p in c["ports"])
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    (secret,) = find(objs, "Secret", next(v["secret"]["secretName"] for v in volumes if v["name"] == "tls"))
    assert secret["type"] == "kubernetes.io/tls"
    # The generated CA in the APIService signed the serving certificate, issued for the Service's name.
    ca = x509.load_pem_x509_certificate(_pem(spec["caBundle"]))
    cert = x509.load_pem_x509_certificate(_pem(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    sans = san.get_values_for_type(x509.DNSName)
    assert f"{svc['metadata']['name']}.{NAMESPACE}.svc" in sans
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")


def test_external_metrics_off_renders_no_apiservice_and_no_tls() -> None:
    objs = manifests(VALUE_SETS["no-external-metrics-builtin-example"])
    assert find(objs, "APIService") == []
    assert [s for s in find(objs, "Secret") if s.get("type") == "kubernetes.io/tls"] == []
    assert [r for r in find(objs, "ClusterRole") if "external-metrics" in r["metadata"]["name"]] == []


def test_tls_from_an_existing_secret_uses_it_and_its_ca_bundle() -> None:
    objs = manifests(VALUE_SETS["tls-from-existing-secret"])
    (api,) = find(objs, "APIService")
    assert api["spec"]["caBundle"] == "Y2E="
    (dep,) = find(objs, "Deployment")
    (tls,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "metrics-tls"
    assert find(objs, "Secret") == []


def test_in_chart_redis_keeps_its_password_in_a_secret_and_the_example_uses_it() -> None:
    values = VALUE_SETS["namespaced-with-redis-and-hpa-example"]
    objs = manifests(values)
    (secret,) = find(objs, "Secret", "jobqueue-op-redis")
    assert base64.b64decode(secret["data"]["redis-password"]) == b"s3cret"
    (dep,) = find(objs, "Deployment", "jobqueue-op-redis")
    (c,) = _containers(dep)
    assert "s3cret" not in json.dumps(dep)
    assert c["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert find(objs, "PersistentVolumeClaim", "jobqueue-op-redis")[0]["spec"]["storageClassName"] == "fast"
    (jq,) = find(objs, "JobQueue")
    assert jq["spec"]["redis"]["host"] == "jobqueue-op-redis"
    assert jq["spec"]["redis"]["auth"]["secretRef"] == {"name": "jobqueue-op-redis", "passwordKey": "redis-password"}
    assert jq["spec"]["scaling"]["mode"] == "hpa"
    assert jq["spec"]["worker"]["image"] == "registry.example/worker:9"


def test_generated_redis_password_is_random_and_long() -> None:
    first = find(manifests({"redis": {"enabled": True}}), "Secret", "jq-jobqueue-redis")[0]
    second = find(manifests({"redis": {"enabled": True}}), "Secret", "jq-jobqueue-redis")[0]
    a, b = (base64.b64decode(s["data"]["redis-password"]) for s in (first, second))
    assert len(a) == 32 and a != b


def test_example_jobqueue_without_in_chart_redis_uses_redis_addr() -> None:
    (jq,) = find(manifests(VALUE_SETS["no-external-metrics-builtin-example"]), "JobQueue")
    assert jq["spec"]["redis"] == {"host": "redis.queues.svc", "port": 6380}
    assert jq["spec"]["scaling"]["mode"] == "builtin"


def test_hpa_example_without_the_metrics_api_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"externalMetrics\.enabled"):
        render({"externalMetrics": {"enabled": False}, "exampleJobQueue": {"enabled": True, "scalingMode": "hpa"}})


def test_notes_say_what_to_do_next() -> None:
    notes = render()["jobqueue/templates/NOTES.txt"]
    for text in ("kubectl get jobqueues", "kubectl describe jq", "examples/jobqueue.yaml", "kubectl get apiservice"):
        assert text in notes


# ------------------------------------------------------------------ values.yaml and its schema

BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"replicaCount": 2}),
    ("unknown nested key", {"operator": {"replicas": 2}}),
    ("tag not a string", {"image": {"tag": 1.2}}),
    ("bad pull policy", {"image": {"pullPolicy": "Sometimes"}}),
    ("log level", {"operator": {"logLevel": "verbose"}}),
    ("namespaces not a list", {"operator": {"watchNamespaces": "default"}}),
    ("namespace not a DNS label", {"operator": {"watchNamespaces": ["Team_A"]}}),
    ("port out of range", {"externalMetrics": {"port": 70000}}),
    ("port as string", {"operator": {"healthPort": "8080"}}),
    ("boolean as string", {"redis": {"enabled": "yes"}}),
    ("tls mode", {"externalMetrics": {"tls": {"mode": "cert-manager"}}}),
    ("scaling mode", {"exampleJobQueue": {"scalingMode": "keda"}}),
    ("negative replicas", {"exampleJobQueue": {"minReplicas": -1}}),
    ("resources not a map", {"operator": {"resources": "small"}}),
    ("node selector value", {"operator": {"nodeSelector": {"a": 1}}}),
    ("pull secret shape", {"imagePullSecrets": ["regcred"]}),
]


@pytest.mark.parametrize(("why", "values"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_schema_rejects_wrong_values(why: str, values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        render(values)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_schema_accepts_the_shipped_and_example_values(name: str) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(VALUE_SETS[name])
        chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))


def _schema_node(schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for key in path:
        if node is None:
            return None
        node = node.get("properties", {}).get(key)
    return node


def test_every_values_key_is_commented_and_described_by_the_schema() -> None:
    """Keys the chart defines (not free-form Kubernetes blocks like resources) each have a
    comment on the line(s) above, and every such key is in values.schema.json."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    checked = 0
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = [k for _, k in stack]
        stack.append((indent, m.group(2)))
        parent_node = _schema_node(schema, parent)
        if parent_node is None or parent_node.get("additionalProperties", True) is not False:
            continue  # inside a free-form Kubernetes object (resources, securityContext, ...)
        path = ".".join([*parent, m.group(2)])
        assert _schema_node(schema, [*parent, m.group(2)]) is not None, f"{path} not in values.schema.json"
        prev = lines[i - 1].strip() if i else ""
        assert prev.startswith("#"), f"values.yaml: {path} has no comment above it"
        checked += 1
    assert checked >= 40


def _leaf_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and node.get("additionalProperties", True) is False:
            out += _leaf_keys(value, node, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def test_docs_values_table_lists_every_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = _leaf_keys(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    doc = (CHART.parents[1] / "docs" / "kubernetes.md").read_text()
    missing = [k for k in keys if f"| `{k}` |" not in doc]
    assert not missing, f"docs/kubernetes.md values table lacks {missing}"
