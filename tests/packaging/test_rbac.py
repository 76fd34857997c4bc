"""The chart's RBAC covers every Kubernetes API call the operator makes, and grants nothing else.

The operator's calls come from ``jobqueue_operator.rbac`` (NAMESPACED and CLUSTER rules, which
its KMock test checks against every request the real operator sends), plus the calls of the HPA
mode and the external metrics server (hpa.py, external_metrics.py), listed here. Until the
operator's list exists, the expected calls of issue 4 below stand in for it.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from chart_support import NAMESPACE, VALUE_SETS, find, manifests

Call = tuple[str, str, str]  # (verb, apiGroup, resource)

#: Calls of the HPA mode (build_hpa): the HorizontalPodAutoscaler each JobQueue owns.
HPA_CALLS: list[Call] = [(v, "autoscaling", "horizontalpodautoscalers") for v in ("get", "create", "patch", "delete")]
#: Stand-in for the operator's own list while it has none (issue 4's resources).
FALLBACK_NAMESPACED: list[Call] = [
    *((v, "jobqueue.dev", "jobqueues") for v in ("list", "watch", "patch")),
    ("patch", "jobqueue.dev", "jobqueues/status"),
    *((v, "", r) for r in ("configmaps", "services") for v in ("get", "create", "patch")),
    *((v, "apps", "deployments") for v in ("get", "create", "patch")),
    ("get", "", "secrets"),
    ("create", "", "events"),
]
FALLBACK_CLUSTER: list[Call] = [
    *((v, "apiextensions.k8s.io", "customresourcedefinitions") for v in ("get", "list", "watch")),
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
]
#: Cluster-scoped calls only made when watching every namespace.
ALL_NAMESPACES_ONLY = {("", "namespaces")}


def _operator_calls() -> tuple[list[Call], list[Call]]:
    """(namespaced, cluster) calls from jobqueue_operator.rbac, or the stand-in lists."""
    try:
        module = importlib.import_module("jobqueue_operator.rbac")
    except ModuleNotFoundError:
        return FALLBACK_NAMESPACED, FALLBACK_CLUSTER

    def expand(rules: Any) -> list[Call]:
        return [(v, r.group, res) for r in rules for res in r.resources for v in r.verbs]

    return expand(module.NAMESPACED), expand(module.CLUSTER)


def _namespaced_calls() -> list[Call]:
    return _operator_calls()[0] + HPA_CALLS


def _cluster_calls(all_namespaces: bool) -> list[Call]:
    return [c for c in _operator_calls()[1] if all_namespaces or (c[1], c[2]) not in ALL_NAMESPACES_ONLY]


def _allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and (resource in r.get("resources", []) or "*" in r.get("resources", []))
        and (verb in r["verbs"] or "*" in r["verbs"])
        for r in rules
    )


def _bound_rules(objs: list[dict[str, Any]], sa: str, namespace: str | None) -> list[dict[str, Any]]:
    """Rules granted to ServiceAccount ``sa`` in ``namespace`` (None: cluster-wide grants only)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}
    rules: list[dict[str, Any]] = []
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE
            for s in binding["subjects"]
        ):
            continue
        bns = binding["metadata"].get("namespace")
        if binding["kind"] == "RoleBinding" and bns != namespace:
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], bns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None and ref["kind"] == "Role":
            role = {"rules": BUILTIN_ROLES.get((bns, ref["name"]), [])}
        assert role is not None, f"{binding['metadata']['name']} binds a role the chart does not render: {ref}"
        rules.extend(role["rules"])
    return rules


#: Roles that exist in every cluster, bound (not created) by the chart.
BUILTIN_ROLES = {
    ("kube-system", "extension-apiserver-authentication-reader"): [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ],
}


def _sa(name: str) -> str:
    objs = manifests(VALUE_SETS[name])
    (dep,) = [
        d for d in find(objs, "Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    return str(dep["spec"]["template"]["spec"]["serviceAccountName"])


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rbac_covers_every_call_of_the_operator(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    sa = _sa(name)
    watched = VALUE_SETS[name].get("operator", {}).get("watchNamespaces") or [None]
    for ns in watched:
        rules = _bound_rules(objs, sa, ns)
        missing = [c for c in _namespaced_calls() if not _allows(rules, *c)]
        assert not missing, f"namespace {ns or '(all)'}: not allowed {missing}"
    cluster = _bound_rules(objs, sa, None)
    missing = [c for c in _cluster_calls(watched == [None]) if not _allows(cluster, *c)]
    assert not missing, f"cluster-wide: not allowed {missing}"
    if watched != [None]:
        # Namespaced install: nothing namespaced is granted cluster-wide.
        assert not _allows(cluster, "get", "", "secrets")
        assert not _allows(cluster, "list", "jobqueue.dev", "jobqueues")
        assert not _allows(cluster, "list", "", "namespaces")


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_operator_is_granted_nothing_it_does_not_call(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    sa = _sa(name)
    watched = VALUE_SETS[name].get("operator", {}).get("watchNamespaces") or [None]
    allowed = set(_namespaced_calls()) | set(_cluster_calls(watched == [None]))
    allowed |= {("get", "", "configmaps"), ("list", "", "configmaps"), ("watch", "", "configmaps")}  # kube-system CA
    for ns in {None, "kube-system", *watched}:
        for rule in _bound_rules(objs, sa, ns):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert (verb, group, resource) in allowed, (
                            f"granted but never called: {verb} {group}/{resource}"
                        )


@pytest.mark.parametrize(
    "name", [n for n, v in VALUE_SETS.items() if v.get("externalMetrics", {}).get("enabled", True)]
)
def test_external_metrics_server_can_read_the_front_proxy_ca_and_the_hpa_can_read_it(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    rules = _bound_rules(objs, _sa(name), "kube-system")
    assert _allows(rules, "get", "", "configmaps")  # extension-apiserver-authentication
    (binding,) = [
        b for b in find(objs, "ClusterRoleBinding") if b["metadata"]["name"].endswith("external-metrics-reader")
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    ]
    (role,) = find(objs, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list"]}]


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rbac_is_least_privilege(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    for role in find(objs, "ClusterRole") + find(objs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], role["metadata"]["name"]
            assert "*" not in rule.get("apiGroups", [])
            if rule.get("apiGroups") != ["external.metrics.k8s.io"]:
                assert "*" not in rule["resources"], role["metadata"]["name"]
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], "secrets are read by name only, never listed or watched"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    sa = _sa(name)
    for ns in [None, "kube-system", *VALUE_SETS[name].get("operator", {}).get("watchNamespaces", [])]:
        rules = _bound_rules(objs, sa, ns)
        assert not _allows(rules, "list", "", "secrets")
        assert not _allows(rules, "create", "", "pods")
        assert not _allows(rules, "create", "rbac.authorization.k8s.io", "roles")


def test_rbac_template_groups_and_comments_every_rule() -> None:
    from chart_support import CHART

    text = (CHART / "templates" / "rbac.yaml").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("- apiGroups:"):
            before = [ln.strip() for ln in lines[max(0, i - 8) : i]]
            assert any(b.startswith("#") for b in before), f"rbac.yaml line {i + 1}: rule without a comment"
