"""What the handlers share through kopf's per-object memo: the API client, conditions, status writes."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from jobqueue_operator.kube import Kube
from jobqueue_operator.models import DEFAULT_WORKER_IMAGE
from jobqueue_operator.status import Conditions

#: Environment variable naming the image of workers whose spec.worker.image is empty.
WORKER_IMAGE_ENV = "JOBQUEUE_WORKER_IMAGE"


def default_image() -> str:
    return os.environ.get(WORKER_IMAGE_ENV) or DEFAULT_WORKER_IMAGE


def kube_of(memo: Mapping[str, Any]) -> Kube:
    kube = memo.get("kube")
    if not isinstance(kube, Kube):
        raise RuntimeError("the startup handler did not run: no API client in the memo")
    return kube


def conditions_of(memo: MutableMapping[str, Any], status: Mapping[str, Any] | None) -> Conditions:
    found = memo.get("conditions")
    if isinstance(found, Conditions):
        return found
    conditions = Conditions.from_status(status)
    memo["conditions"] = conditions
    return conditions


def refresh_ready(memo: MutableMapping[str, Any], conditions: Conditions, generation: int | None) -> None:
    """Ready = the spec is valid, the children are applied, and Redis answers."""
    invalid = memo.get("invalid")
    if invalid:
        conditions.set("Ready", False, "InvalidSpec", str(invalid), generation)
    elif not memo.get("applied"):
        conditions.set("Ready", None, "Reconciling", "children not applied yet", generation)
    elif conditions.status_of("RedisReachable") == "False":
        conditions.set("Ready", False, "RedisUnreachable", "the backlog cannot be read", generation)
    else:
        conditions.set("Ready", True, "Reconciled", "worker Deployment, ConfigMap and Service are applied", generation)


async def write_status(
    kube: Kube, namespace: str, name: str, conditions: Conditions, fields: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Merge-patch the status subresource with ``fields`` plus the whole conditions list."""
    patch = {"status": {**fields, "conditions": conditions.as_list()}}
    return await kube.merge_patch("JobQueue", namespace, name, patch, subresource="status")
