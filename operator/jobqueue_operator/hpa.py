"""The HorizontalPodAutoscaler of a JobQueue in ``spec.scaling.mode: hpa`` (a pure builder).

In hpa mode Kubernetes' HPA controller, not the operator's autoscaler, sets the JobQueue's
replicas through its scale subresource. Its one metric is the External metric
``jobqueue_backlog`` (pending + in-flight + due retries, as the JobQueue's countInFlight /
countDelayedDue say) that the operator serves on external.metrics.k8s.io (external_metrics.py),
selected by the label ``jobqueue.dev/name``. With an ``AverageValue`` target of
targetJobsPerWorker the HPA computes ceil(backlog / targetJobsPerWorker), the same rule as the
built-in autoscaler. The reconcile handler applies this dict (owned by the JobQueue) and deletes
the HPA when the mode goes back to builtin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUP = "jobqueue.dev"
VERSION = "v1alpha1"
KIND = "JobQueue"
#: The External metric the HPA reads (served by external_metrics.py).
BACKLOG_METRIC = "jobqueue_backlog"
#: Label selecting one JobQueue's series of the external metrics.
NAME_LABEL = "jobqueue.dev/name"
MANAGED_BY = "jobqueue-operator"
#: Worker concurrency assumed when spec.worker.concurrency is absent (the runtime's worker.count).
DEFAULT_CONCURRENCY = 16


def hpa_name(jobqueue_name: str) -> str:
    """The HPA is named after its JobQueue (one per JobQueue, same namespace)."""
    return jobqueue_name


def target_jobs_per_worker(spec: Mapping[str, Any]) -> int:
    """spec.scaling.targetJobsPerWorker, defaulting to the worker's concurrency."""
    scaling = spec.get("scaling") or {}
    worker = spec.get("worker") or {}
    target = scaling.get("targetJobsPerWorker") or worker.get("concurrency") or DEFAULT_CONCURRENCY
    return max(1, int(target))


def build_hpa(jobqueue: Mapping[str, Any]) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler for a JobQueue object (metadata + spec).

    minReplicas is raised to 1: an HPA may only scale to zero behind the alpha feature gate
    HPAScaleToZero, so scale-to-zero stays a feature of the built-in autoscaler. The JobQueue's
    ``scaling.behavior`` is already in the HPA v2 shape and is passed through unchanged.
    """
    meta = jobqueue["metadata"]
    spec = jobqueue.get("spec") or {}
    scaling = spec.get("scaling") or {}
    name = str(meta["name"])
    max_replicas = max(1, int(scaling.get("maxReplicas", 1)))
    min_replicas = min(max(1, int(scaling.get("minReplicas", 1))), max_replicas)
    hpa_spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {"name": BACKLOG_METRIC, "selector": {"matchLabels": {NAME_LABEL: name}}},
                    "target": {"type": "AverageValue", "averageValue": str(target_jobs_per_worker(spec))},
                },
            }
        ],
    }
    behavior = scaling.get("behavior")
    if behavior:
        hpa_spec["behavior"] = dict(behavior)
    metadata: dict[str, Any] = {
        "name": hpa_name(name),
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, NAME_LABEL: name},
    }
    if meta.get("namespace"):
        metadata["namespace"] = meta["namespace"]
    if meta.get("uid"):
        metadata["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": name,
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata, "spec": hpa_spec}
