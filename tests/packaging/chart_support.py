"""Offline rendering of charts/jobqueue for the chart tests (helm-python-sdk: Helm's Go library).

Shared by test_chart.py, test_rbac.py and test_chart_crds.py; not a test module itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobqueue"
NAMESPACE = "jobqueue-system"
RELEASE = "jq"
#: Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas we have.
KUBE_VERSIONS = ("1.25.0", "1.37.0")

#: Value sets rendered by every chart test: the defaults and non-default combinations that
#: switch every template branch.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-with-redis-and-hpa-example": {
        "image": {"repository": "registry.example/jobqueue", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "fullnameOverride": "jobqueue-op",
        "operator": {
            "logLevel": "debug",
            "watchNamespaces": ["team-a", "team-b"],
            "workerImage": "registry.example/worker:9",
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "EXTRA", "value": "1"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "podAnnotations": {"example.com/team": "queues"},
            "podLabels": {"team": "queues"},
            "priorityClassName": "system-cluster-critical",
        },
        "serviceAccount": {"create": True, "name": "jq-operator", "annotations": {"iam": "role"}},
        "redis": {"enabled": True, "password": "s3cret", "persistence": {"enabled": True, "storageClass": "fast"}},
        "exampleJobQueue": {"enabled": True, "scalingMode": "hpa", "minReplicas": 1, "maxReplicas": 8},
    },
    "no-external-metrics-builtin-example": {
        "externalMetrics": {"enabled": False},
        "serviceAccount": {"create": False, "name": "preexisting"},
        "exampleJobQueue": {"enabled": True, "redisAddr": "redis.queues.svc:6380"},
    },
    "tls-from-existing-secret": {
        "externalMetrics": {
            "tls": {"mode": "secret", "existingSecret": "metrics-tls", "caBundle": "Y2E="},
            "requireClientCert": False,
            "port": 8443,
            "servicePort": 8443,
        },
    },
}


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` (install) would produce."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders (NOTES.txt excluded), CRDs not included."""
    out: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
