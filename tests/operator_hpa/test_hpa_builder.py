"""build_hpa(): the HorizontalPodAutoscaler of a JobQueue in hpa mode, validated against the
Kubernetes schemas (kubernetes-validate, strict) as well as checked field by field."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from jobqueue_operator.hpa import BACKLOG_METRIC, NAME_LABEL, build_hpa, target_jobs_per_worker


def jobqueue(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "emails", "namespace": "team-a", "uid": "0b9c-uid"},
        "spec": spec,
    }


BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Min"},
}

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "explicit": {"scaling": {"mode": "hpa", "minReplicas": 2, "maxReplicas": 20, "targetJobsPerWorker": 50}},
    "with behavior": {"scaling": {"mode": "hpa", "maxReplicas": 4, "behavior": BEHAVIOR}, "worker": {"concurrency": 8}},
    "min zero": {"scaling": {"mode": "hpa", "minReplicas": 0, "maxReplicas": 3}},
}


@pytest.mark.parametrize("kube", ["1.25.0", "1.37.0"])
@pytest.mark.parametrize("case", list(CASES))
def test_hpa_manifest_is_valid_kubernetes(case: str, kube: str) -> None:
    kubernetes_validate.validate(build_hpa(jobqueue(**CASES[case])), kube, strict=True)


def test_hpa_targets_the_jobqueue_scale_subresource_and_is_owned_by_it() -> None:
    hpa = build_hpa(jobqueue(**CASES["explicit"]))
    assert hpa["metadata"]["name"] == "emails" and hpa["metadata"]["namespace"] == "team-a"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "name": "emails",
    }
    (owner,) = hpa["metadata"]["ownerReferences"]
    assert owner["uid"] == "0b9c-uid" and owner["controller"] is True and owner["kind"] == "JobQueue"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 20)


def test_hpa_metric_is_the_external_backlog_of_this_jobqueue_per_worker() -> None:
    (metric,) = build_hpa(jobqueue(**CASES["explicit"]))["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"] == {"name": BACKLOG_METRIC, "selector": {"matchLabels": {NAME_LABEL: "emails"}}}
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "50"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, 16),
        ({"worker": {"concurrency": 8}}, 8),
        ({"worker": {"concurrency": 8}, "scaling": {"targetJobsPerWorker": 3}}, 3),
        ({"scaling": {"targetJobsPerWorker": 0}}, 16),
    ],
)
def test_target_per_worker_defaults_to_the_worker_concurrency(spec: dict[str, Any], expected: int) -> None:
    assert target_jobs_per_worker(spec) == expected


def test_behavior_passes_through_in_the_hpa_v2_shape() -> None:
    hpa = build_hpa(jobqueue(**CASES["with behavior"]))
    assert hpa["spec"]["behavior"] == BEHAVIOR
    assert hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"] == "8"


def test_min_replicas_zero_is_raised_to_one_without_the_alpha_gate() -> None:
    assert build_hpa(jobqueue(**CASES["min zero"]))["spec"]["minReplicas"] == 1


def test_min_above_max_is_clamped() -> None:
    hpa = build_hpa(jobqueue(scaling={"minReplicas": 9, "maxReplicas": 3}))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 3)
