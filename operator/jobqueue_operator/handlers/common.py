"""What the handlers share through kopf's per-object memo: the API client, conditions, status writes."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from jobqueue_operator.kube import Kube
from jobqueue_operator.models import DEFAULT_WORKER_IMAGE, JobQueueSpec
from jobqueue_operator.queue import Credentials, CredentialsMissing
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


async def read_credentials(kube: Kube, namespace: str, spec: JobQueueSpec) -> Credentials:
    """The Redis credentials and CA that spec.redis names, from their Secrets (CredentialsMissing if absent)."""
    username = password = ca = None
    auth = spec.redis.auth
    if auth is not None:
        ref = auth.secret_ref
        data = await kube.read_secret(namespace, ref.name)
        if data is None or ref.password_key not in data:
            raise CredentialsMissing(f"Secret {ref.name} (key {ref.password_key}) not found")
        password = data[ref.password_key].decode()
        if ref.username_key:
            if ref.username_key not in data:
                raise CredentialsMissing(f"Secret {ref.name} has no key {ref.username_key}")
            username = data[ref.username_key].decode()
    ca_ref = spec.redis.tls.ca_secret_ref
    if ca_ref is not None:
        data = await kube.read_secret(namespace, ca_ref.name)
        if data is None or ca_ref.key not in data:
            raise CredentialsMissing(f"Secret {ca_ref.name} (key {ca_ref.key}) not found")
        ca = data[ca_ref.key].decode()
    return Credentials(username, password, ca)
