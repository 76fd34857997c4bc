"""Every Kubernetes API permission the operator needs, by purpose: the source of the chart's RBAC.

Keep this in step with kube.py, the handlers, and kopf's settings in main.py. The operator test
(tests/operator/test_operator_kmock.py) records every request the real operator sends to the
emulated API server and fails if one is not covered here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    purpose: str


#: Namespaced rules (granted per watched namespace, or cluster-wide with --all-namespaces).
NAMESPACED: tuple[Rule, ...] = (
    Rule(
        "jobqueue.dev",
        ("jobqueues",),
        ("list", "watch", "patch"),
        "kopf watches JobQueues and patches its finalizer/annotations; the autoscaler patches spec.replicas",
    ),
    Rule("jobqueue.dev", ("jobqueues/status",), ("patch",), "status: queue figures, replicas, conditions"),
    Rule(
        "",
        ("configmaps", "services"),
        ("get", "create", "patch"),
        "the worker ConfigMap and metrics Service each JobQueue owns (server-side apply)",
    ),
    Rule(
        "apps",
        ("deployments",),
        ("get", "create", "patch"),
        "the worker Deployment each JobQueue owns; the autoscaler patches its replicas",
    ),
    Rule(
        "autoscaling",
        ("horizontalpodautoscalers",),
        ("get", "create", "patch", "delete"),
        "scaling.mode hpa: the HorizontalPodAutoscaler each JobQueue owns, deleted back in builtin mode",
    ),
    Rule(
        "",
        ("secrets",),
        ("get",),
        "the Redis credentials and CA named by spec.redis (read by name, to measure and serve the backlog)",
    ),
    Rule(
        "",
        ("events",),
        ("create",),
        "Events: ScaledUp/ScaledDown, RedisUnreachable, InvalidSpec, kopf's handler failures",
    ),
)

#: Cluster-scoped rules: none. kopf's CRD/namespace scanning is disabled (main.py), so it needs no
#: customresourcedefinitions or namespaces access; discovery (/api, /apis) is open to any
#: authenticated client. With --all-namespaces the NAMESPACED rules are granted cluster-wide.
CLUSTER: tuple[Rule, ...] = ()


#: Rules in kube-system only, with the external metrics API enabled (handlers/metrics_api.py).
KUBE_SYSTEM: tuple[Rule, ...] = (
    Rule(
        "", ("configmaps",), ("get",), "the front-proxy client CA in extension-apiserver-authentication (read by name)"
    ),
)
#: The one object KUBE_SYSTEM's rule is limited to (a Role's resourceNames).
KUBE_SYSTEM_NAMES: tuple[str, ...] = ("extension-apiserver-authentication",)


def covers(group: str, resource: str, verb: str, namespace: str | None = None) -> bool:
    """Whether the rules above allow one request (for tests and the chart's RBAC check)."""
    rules = NAMESPACED + CLUSTER + (KUBE_SYSTEM if namespace == "kube-system" else ())
    return any(group == r.group and resource in r.resources and verb in r.verbs for r in rules)
