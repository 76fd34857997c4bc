"""The few Kubernetes API calls the operator's handlers make, on kopf's authenticated session.

kopf exposes no public API client, so this module is the one place that reaches into
``kopf._cogs.clients`` (stable since kopf 1.29): the requests ride kopf's login, vault, retries
and backoffs, and work wherever kopf works (in-cluster, kubeconfig, or a KMock emulator in
tests). Swapping in another client means changing this file only. Every call here is listed in
rbac.py, from which the Helm chart's RBAC is derived.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api, errors

FIELD_MANAGER = "jobqueue-operator"

NotFound = errors.APINotFoundError
Conflict = errors.APIConflictError
Unprocessable = errors.APIUnprocessableEntityError
APIError = errors.APIError

#: kind -> (API prefix, plural) of everything the operator reads or writes by name.
RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Service": ("api/v1", "services"),
    "Secret": ("api/v1", "secrets"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("apis/autoscaling/v2", "horizontalpodautoscalers"),
    "JobQueue": ("apis/jobqueue.dev/v1alpha1", "jobqueues"),
}


def url(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = RESOURCES[kind]
    parts = [prefix, "namespaces", namespace, plural]
    if name is not None:
        parts.append(name)
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


class Kube:
    """A handful of typed calls; one instance per operator, created by the startup handler."""

    def __init__(self, settings: kopf.OperatorSettings, logger: logging.Logger | None = None) -> None:
        self.settings = settings
        self.logger = logger or logging.getLogger("jobqueue_operator.kube")

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await api.get(url(kind, namespace, name), settings=self.settings, logger=self.logger)
        except errors.APINotFoundError:
            return None
        return body

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        created: dict[str, Any] = await api.post(
            url(body["kind"], meta["namespace"]), payload=dict(body), settings=self.settings, logger=self.logger
        )
        return created

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (our field manager owns exactly the fields we send; dropped ones go)."""
        meta = body["metadata"]
        target = url(body["kind"], meta["namespace"], meta["name"]) + f"?fieldManager={FIELD_MANAGER}&force=true"
        applied: dict[str, Any] = await api.patch(
            target,
            payload=dict(body),
            headers={"Content-Type": "application/apply-patch+yaml"},
            settings=self.settings,
            logger=self.logger,
        )
        return applied

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any] | None:
        """JSON merge patch; None when the object is gone."""
        try:
            patched: dict[str, Any] = await api.patch(
                url(kind, namespace, name, subresource),
                payload=dict(patch),
                headers={"Content-Type": "application/merge-patch+json"},
                settings=self.settings,
                logger=self.logger,
            )
        except errors.APINotFoundError:
            return None
        return patched

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (its dependents follow in the background); False when it was gone."""
        try:
            await api.delete(url(kind, namespace, name), settings=self.settings, logger=self.logger)
        except errors.APINotFoundError:
            return False
        return True

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None when it does not exist."""
        body = await self.get("Secret", namespace, name)
        if body is None:
            return None
        return {k: base64.b64decode(v) for k, v in (body.get("data") or {}).items()}
