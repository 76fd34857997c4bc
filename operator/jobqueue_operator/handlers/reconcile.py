"""Create/update/resume: turn the JobQueue into its ConfigMap, Deployment and Service, idempotently.

In ``scaling.mode: hpa`` it also applies the JobQueue's HorizontalPodAutoscaler (hpa.py), and
deletes it when the mode goes back to builtin; every JobQueue's queue is registered with the
external metrics API (handlers/metrics_api.py) that such an HPA reads.

Each child carries the hash of what we applied; an unchanged spec sends no write at all, a
changed one is server-side applied (the pod template's config hash rolls the Deployment), and a
replicas-only change (kubectl scale, an HPA, the autoscaler) is a one-field merge patch. An
invalid spec sets Ready=False/InvalidSpec, posts an Event and raises kopf.PermanentError, so kopf
does not retry until the spec changes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import kopf
from pydantic import ValidationError

from jobqueue.config import format_validation_error
from jobqueue_operator import builders, hpa
from jobqueue_operator.handlers import metrics_api
from jobqueue_operator.handlers.common import conditions_of, default_image, kube_of, refresh_ready, write_status
from jobqueue_operator.kube import APIError, Kube, Unprocessable
from jobqueue_operator.models import JobQueueSpec, parse_spec

RETRY_DELAY_S = 10.0


def _desired_hash(child: Mapping[str, Any]) -> str:
    """Hash of a child without its replicas (those change alone, through a one-field patch)."""
    if child["kind"] == "Deployment":
        child = {**child, "spec": {k: v for k, v in child["spec"].items() if k != "replicas"}}
    return builders.hash_of(child)


def _owned_by_other(live: Mapping[str, Any], uid: str) -> bool:
    refs = live.get("metadata", {}).get("ownerReferences") or []
    controllers = [r for r in refs if r.get("controller")]
    return not controllers or all(r.get("uid") != uid for r in controllers)


async def ensure(kube: Kube, child: dict[str, Any], uid: str) -> str | None:
    """Create, apply or scale one child as needed; returns what was done, None for nothing."""
    meta = child["metadata"]
    digest = _desired_hash(child)
    meta.setdefault("annotations", {})[builders.APPLIED_HASH_ANNOTATION] = digest
    live = await kube.get(child["kind"], meta["namespace"], meta["name"])
    if live is None:
        await kube.create(child)
        return "created"
    if _owned_by_other(live, uid):
        raise builders.InvalidSpec(
            [f"{child['kind']} {meta['name']} already exists and is not controlled by this JobQueue"]
        )
    if (live["metadata"].get("annotations") or {}).get(builders.APPLIED_HASH_ANNOTATION) != digest:
        await kube.apply(child)
        return "applied"
    want = child.get("spec", {}).get("replicas")
    if child["kind"] == "Deployment" and live.get("spec", {}).get("replicas") != want:
        await kube.merge_patch("Deployment", meta["namespace"], meta["name"], {"spec": {"replicas": want}})
        return "scaled"
    return None


def desired_children(
    owner: Mapping[str, Any], spec: Mapping[str, Any], parsed: JobQueueSpec, replicas: int
) -> list[dict[str, Any]]:
    """The ConfigMap, Deployment and Service, plus the HPA in hpa mode."""
    children = builders.build_children(owner, parsed, replicas, default_image())
    if parsed.scaling.mode == "hpa":
        children.append(hpa.build_hpa({"metadata": dict(owner), "spec": copy.deepcopy(dict(spec))}))
    return children


async def remove_hpa(kube: Kube, namespace: str, name: str, uid: str) -> bool:
    """Back in builtin mode: delete the HPA this JobQueue controls (never someone else's)."""
    hpa_name = hpa.hpa_name(name)
    live = await kube.get("HorizontalPodAutoscaler", namespace, hpa_name)
    if live is None or _owned_by_other(live, uid):
        return False
    return await kube.delete("HorizontalPodAutoscaler", namespace, hpa_name)


async def _fail_invalid(
    kube: Kube,
    memo: MutableMapping[str, Any],
    body: Any,
    *,
    name: str,
    namespace: str,
    generation: int | None,
    problems: list[str],
) -> None:
    message = "; ".join(problems)
    memo["invalid"] = message
    conditions = conditions_of(memo, body.get("status"))
    refresh_ready(memo, conditions, generation)
    await write_status(kube, namespace, name, conditions, {"phase": "Invalid", "observedGeneration": generation})
    kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    raise kopf.PermanentError(f"invalid spec: {message}")


async def reconcile(
    *,
    body: Any,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    name: str,
    namespace: str,
    memo: MutableMapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    **_: Any,
) -> None:
    kube = kube_of(memo)
    generation = meta.get("generation")
    try:
        parsed = parse_spec(spec)
    except ValidationError as err:
        await _fail_invalid(
            kube,
            memo,
            body,
            name=name,
            namespace=namespace,
            generation=generation,
            problems=[f"spec.{p}" for p in format_validation_error(err)],
        )
        return
    names = builders.Names.of(name)
    replicas = parsed.replicas
    if replicas is None:
        live = await kube.get("Deployment", namespace, names.deployment)
        replicas = (live or {}).get("spec", {}).get("replicas", parsed.scaling.min_replicas)
    owner = {"name": name, "namespace": namespace, "uid": meta["uid"]}
    try:
        children = desired_children(owner, spec, parsed, int(replicas))
        if spec.get("replicas") is None:
            # Before any child is applied: once the HPA exists (or anyone scales the Deployment),
            # this default must not overwrite their spec.replicas.
            await kube.merge_patch("JobQueue", namespace, name, {"spec": {"replicas": int(replicas)}})
        done = [(c["kind"], await ensure(kube, c, meta["uid"])) for c in children]
        if parsed.scaling.mode != "hpa" and await remove_hpa(kube, namespace, name, meta["uid"]):
            done.append(("HorizontalPodAutoscaler", "deleted"))
    except builders.InvalidSpec as err:
        await _fail_invalid(
            kube, memo, body, name=name, namespace=namespace, generation=generation, problems=err.problems
        )
        return
    except Unprocessable as err:
        await _fail_invalid(
            kube,
            memo,
            body,
            name=name,
            namespace=namespace,
            generation=generation,
            problems=[f"the API server rejected a child: {err.message or err}"],
        )
        return
    except APIError as err:
        raise kopf.TemporaryError(f"applying children failed: {err}", delay=RETRY_DELAY_S) from err
    changed = [f"{kind} {what}" for kind, what in done if what]
    if changed:
        logger.info("reconciled: %s", ", ".join(changed))
    await metrics_api.register(memo, kube, namespace=namespace, name=name, spec=parsed, logger=logger)
    memo["invalid"] = None
    memo["applied"] = True
    conditions = conditions_of(memo, body.get("status"))
    refresh_ready(memo, conditions, generation)
    conditions.set(
        "Paused",
        parsed.scaling.paused,
        "Paused" if parsed.scaling.paused else "NotPaused",
        "spec.scaling.paused freezes replicas" if parsed.scaling.paused else "",
        generation,
    )
    fields: dict[str, Any] = {"observedGeneration": generation, "selector": builders.selector_string(name)}
    scaler = memo.get("scaler")
    if getattr(scaler, "last_status", None) is None:  # the autoscaler has not reported yet
        fields["phase"] = "Paused" if parsed.scaling.paused else "Pending"
    await write_status(kube, namespace, name, conditions, fields)
    if scaler is not None:
        scaler.last_status = None  # make the autoscaler write its whole view again


async def deleted(
    *,
    name: str,
    namespace: str,
    memo: MutableMapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    **_: Any,
) -> None:
    """Stop serving its metrics; nothing to delete by hand: the children (the HPA too) carry owner
    references and are garbage-collected."""
    await metrics_api.unregister(memo, namespace, name)
    logger.info(
        "JobQueue %s/%s deleted; its Deployment, ConfigMap and Service follow by owner reference", namespace, name
    )
