"""The chart's RBAC covers every Kubernetes API call the operator makes, and grants nothing else.

The operator's calls are ``jobqueue_operator.rbac`` (NAMESPACED, CLUSTER and KUBE_SYSTEM rules),
which its KMock tests check against every request the real operator sends, HPA mode and the
external metrics API included.
"""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import NAMESPACE, VALUE_SETS, find, manifests

from jobqueue_operator import rbac

Call = tuple[str, str, str]  # (verb, apiGroup, resource)


def _expand(rules: tuple[rbac.Rule, ...]) -> list[Call]:
    return [(v, r.group, res) for r in rules for res in r.resources for v in r.verbs]


def _namespaced_calls() -> list[Call]:
    return _expand(rbac.NAMESPACED)


def _cluster_calls(all_namespaces: bool) -> list[Call]:
    del all_namespaces  # kopf's scanning is off: no cluster-scoped call in either mode
    return _expand(rbac.CLUSTER)


def _kube_system_calls(external_metrics: bool) -> list[Call]:
    return _expand(rbac.KUBE_SYSTEM) if external_metrics else []


def _allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and (resource in r.get("resources", []) or "*" in r.get("resources", []))
        and (verb in r["verbs"] or "*" in r["verbs"])
        for r in rules
    )


def _bound_rules(
    objs: list[dict[str, Any]], sa: str, namespace: str | None, *, role_bindings_only: bool = False
) -> list[dict[str, Any]]:
    """Rules granted to ServiceAccount ``sa`` in ``namespace`` (None: cluster-wide grants only),
    or only those of the RoleBindings in that namespace."""
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
        if role_bindings_only and binding["kind"] != "RoleBinding":
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], bns if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, f"{binding['metadata']['name']} binds a role the chart does not render: {ref}"
        rules.extend(role["rules"])
    return rules


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


def _external_metrics(name: str) -> bool:
    return bool(VALUE_SETS[name].get("externalMetrics", {}).get("enabled", True))


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_operator_is_granted_nothing_it_does_not_call(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    sa = _sa(name)
    watched = VALUE_SETS[name].get("operator", {}).get("watchNamespaces") or [None]
    granted = set(_namespaced_calls())
    expected = {
        None: granted | set(_cluster_calls(watched == [None])) if watched == [None] else set(),
        "kube-system": set(_kube_system_calls(_external_metrics(name))),
        **{ns: granted for ns in watched if ns is not None},
    }
    for ns, allowed in expected.items():
        for rule in _bound_rules(objs, sa, ns, role_bindings_only=ns == "kube-system"):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert (verb, group, resource) in allowed, (
                            f"{ns or 'cluster-wide'}: granted but never called: {verb} {group}/{resource}"
                        )


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_the_chart_grants_exactly_the_rules_of_the_operator(name: str) -> None:
    """Both ways at once: each bound rule set, expanded, equals jobqueue_operator.rbac's calls."""
    objs = manifests(VALUE_SETS[name])
    sa = _sa(name)
    watched = VALUE_SETS[name].get("operator", {}).get("watchNamespaces") or [None]

    def granted(ns: str | None) -> set[Call]:
        rules = _bound_rules(objs, sa, ns, role_bindings_only=ns == "kube-system")
        return {(v, g, r) for rule in rules for g in rule["apiGroups"]
                for r in rule["resources"] for v in rule["verbs"]}

    for ns in watched:
        want = set(_namespaced_calls()) | (set(_cluster_calls(True)) if ns is None else set())
        assert granted(ns) == want, ns or "cluster-wide"
    if watched != [None]:
        assert granted(None) == set(_cluster_calls(False))
    assert granted("kube-system") == set(_kube_system_calls(_external_metrics(name)))


@pytest.mark.parametrize(
    "name", [n for n, v in VALUE_SETS.items() if v.get("externalMetrics", {}).get("enabled", True)]
)
def test_external_metrics_server_can_read_the_front_proxy_ca_and_the_hpa_can_read_it(name: str) -> None:
    objs = manifests(VALUE_SETS[name])
    rules = _bound_rules(objs, _sa(name), "kube-system", role_bindings_only=True)
    assert _allows(rules, "get", "", "configmaps")  # extension-apiserver-authentication
    assert [r.get("resourceNames") for r in rules] == [list(rbac.KUBE_SYSTEM_NAMES)], "that ConfigMap only"
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
