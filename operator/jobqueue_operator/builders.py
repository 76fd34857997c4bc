"""Pure functions turning a JobQueue into the manifests it owns: ConfigMap, Deployment, Service.

Called by handlers/reconcile.py (which applies them) and by tests (which validate them with
kubernetes-validate). No I/O here: the inputs are the JobQueue's metadata and validated spec,
plus the default worker image the operator was started with.

The worker's runtime config is rendered from the runtime's own pydantic model
(jobqueue.config.Config): spec.worker.config first, then the fields the JobQueue owns
(queue name, Redis location, priorities, concurrency, handler) on top. The Redis password never
enters the ConfigMap; it reaches the pod as REDIS_PASSWORD from the Secret.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from jobqueue.config import Config, build_config
from jobqueue.errors import ConfigError
from jobqueue_operator.models import API_VERSION, DEFAULT_WORKER_IMAGE, KIND, JobQueueSpec

CONFIG_DIR = "/config"
CONFIG_FILE = "config.yaml"
CA_DIR = "/etc/jobqueue/redis-ca"
#: Annotation on the pod template: a config change rolls the Deployment.
CONFIG_HASH_ANNOTATION = "jobqueue.dev/config-hash"
#: Annotation on every child: the hash of what we applied (unchanged spec -> no patch).
APPLIED_HASH_ANNOTATION = "jobqueue.dev/applied-hash"
MANAGED_BY = "jobqueue-operator"
NAME_LABEL = "jobqueue.dev/name"
#: Longest JobQueue name whose children's names and label values stay valid (63 - len("-metrics")).
MAX_NAME_LENGTH = 55
GRACE_MARGIN_S = 10
RUN_AS_USER = 10001


class InvalidSpec(ValueError):
    """The JobQueue cannot be turned into manifests; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Names:
    jobqueue: str
    configmap: str
    deployment: str
    service: str

    @classmethod
    def of(cls, name: str) -> Names:
        return cls(name, f"{name}-worker-config", f"{name}-worker", f"{name}-metrics")


def selector_labels(name: str) -> dict[str, str]:
    """Labels selecting one JobQueue's worker pods (immutable in a Deployment: never change them)."""
    return {"app.kubernetes.io/name": "jobqueue-worker", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        NAME_LABEL: name,
    }


def owner_reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Makes the JobQueue the controller of a child: deleting it garbage-collects the child."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(meta: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": labels(meta["name"]),
        "ownerReferences": [owner_reference(meta)],
    }


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: dicts merge, lists of named dicts merge by name, anything else is replaced."""
    for key, value in over.items():
        old = base.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict):
            _merge(old, value)
        elif isinstance(old, list) and _named_list(value) and _named_list(old):
            by_name = {item["name"]: item for item in old}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    old.append(copy.deepcopy(dict(item)))
        else:
            base[key] = copy.deepcopy(value)
    return base


def _named_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) and "name" in i for i in v)


# --------------------------------------------------------------------------- runtime config


def render_config(name: str, spec: JobQueueSpec) -> Config:
    """The runtime Config of the workers, validated by the runtime's model (raises InvalidSpec)."""
    data: dict[str, Any] = copy.deepcopy(spec.worker.config)
    r = spec.redis
    redis: dict[str, Any] = {"db": r.db, "tls": {"enabled": r.tls.enabled}}
    if r.url:
        redis["url"] = r.url
    else:
        redis["addr"] = f"{r.host}:{r.port}"
    if r.tls.ca_secret_ref is not None:
        redis["tls"]["ca_file"] = f"{CA_DIR}/{r.tls.ca_secret_ref.key}"
    if r.tls.insecure_skip_verify:
        redis["tls"]["insecure_skip_verify"] = True
    worker: dict[str, Any] = {"priorities": list(spec.queues), "count": spec.worker.concurrency}
    if spec.worker.handler:
        worker["handler"] = spec.worker.handler
    producer = data.get("producer") if isinstance(data.get("producer"), dict) else {}
    owned: dict[str, Any] = {
        "queue_name": spec.queue_name or name,
        "redis": redis,
        "worker": worker,
        "observability": {"metrics_host": "0.0.0.0"},
    }
    if "default_priority" not in (producer or {}):
        owned["producer"] = {"default_priority": spec.queues[-1]}
    for section in ("redis",):
        if isinstance(data.get(section), dict):
            for forbidden in ("password", "username"):
                if forbidden in data[section]:
                    raise InvalidSpec([f"spec.worker.config.redis.{forbidden}: use spec.redis.auth.secretRef"])
    _merge(data, owned)
    try:
        return build_config(data)
    except ConfigError as err:
        raise InvalidSpec([f"spec.worker.config: {p}" for p in err.problems]) from None


def config_yaml(config: Config) -> str:
    body = config.model_dump(mode="json", exclude_none=True)
    return "# Rendered by jobqueue-operator from the JobQueue; edits are overwritten.\n" + yaml.safe_dump(
        body, sort_keys=False
    )


def grace_period_s(spec: JobQueueSpec, config: Config) -> int:
    shutdown_s = config.worker.shutdown_timeout.total_seconds()
    given = spec.worker.termination_grace_period_seconds
    if given is None:
        return math.ceil(shutdown_s) + GRACE_MARGIN_S
    if given <= shutdown_s:
        raise InvalidSpec(
            [
                f"spec.worker.terminationGracePeriodSeconds: {given} must exceed the runtime's "
                f"worker.shutdown_timeout ({shutdown_s:g}s), or jobs are killed mid-drain"
            ]
        )
    return given


def validate(meta: Mapping[str, Any], spec: JobQueueSpec) -> Config:
    """Everything that can be wrong with a (schema-valid) JobQueue, as one InvalidSpec."""
    name = str(meta["name"])
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec([f"metadata.name: at most {MAX_NAME_LENGTH} characters (children names)"])
    config = render_config(name, spec)
    grace_period_s(spec, config)
    return config


# --------------------------------------------------------------------------- manifests


def hash_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_configmap(meta: Mapping[str, Any], config: Config) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(meta, Names.of(meta["name"]).configmap),
        "data": {CONFIG_FILE: config_yaml(config)},
    }


def _env(spec: JobQueueSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    auth = spec.redis.auth
    if auth is not None:
        ref = auth.secret_ref
        env.append(
            {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.password_key}}}
        )
        if ref.username_key:
            env.append(
                {"name": "REDIS_USERNAME", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.username_key}}}
            )
    return env + [copy.deepcopy(e) for e in spec.worker.env]


def build_deployment(
    meta: Mapping[str, Any],
    spec: JobQueueSpec,
    config: Config,
    replicas: int,
    default_image: str = DEFAULT_WORKER_IMAGE,
) -> dict[str, Any]:
    name = str(meta["name"])
    names = Names.of(name)
    w = spec.worker
    port = config.observability.metrics_port or 9090
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.configmap}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    ca = spec.redis.tls.ca_secret_ref
    if ca is not None:
        items = [{"key": ca.key, "path": ca.key}]
        volumes.append({"name": "redis-ca", "secret": {"secretName": ca.name, "items": items}})
        mounts.append({"name": "redis-ca", "mountPath": CA_DIR, "readOnly": True})

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    container: dict[str, Any] = {
        "name": "worker",
        "image": w.image or default_image,
        "imagePullPolicy": w.image_pull_policy,
        "command": list(w.command) if w.command else ["job-queue-system"],
        "args": list(w.args) if w.args is not None else ["--role=worker", f"--config={CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": copy.deepcopy(w.resources),
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 5, 2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    config_hash = hash_of(config_yaml(config))
    template: dict[str, Any] = {
        "metadata": {
            "labels": labels(name),
            "annotations": {
                CONFIG_HASH_ANNOTATION: config_hash,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": grace_period_s(spec, config),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }
    if w.node_selector:
        template["spec"]["nodeSelector"] = dict(w.node_selector)
    if w.tolerations:
        template["spec"]["tolerations"] = copy.deepcopy(w.tolerations)
    if w.pod_template:
        _merge(template, w.pod_template)
        template["metadata"]["labels"].update(selector_labels(name))  # the selector must keep matching
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(meta, names.deployment),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": template,
        },
    }


def build_service(meta: Mapping[str, Any], config: Config) -> dict[str, Any]:
    port = config.observability.metrics_port or 9090
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(meta, Names.of(meta["name"]).service),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(str(meta["name"])),
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def build_children(
    meta: Mapping[str, Any],
    spec: JobQueueSpec,
    replicas: int,
    default_image: str = DEFAULT_WORKER_IMAGE,
) -> list[dict[str, Any]]:
    """Every child, in apply order (the ConfigMap before the Deployment that mounts it)."""
    config = validate(meta, spec)
    return [
        build_configmap(meta, config),
        build_deployment(meta, spec, config, replicas, default_image),
        build_service(meta, config),
    ]
