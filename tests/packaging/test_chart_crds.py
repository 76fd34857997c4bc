"""The chart's CRDs are a byte-identical copy of crds/ (hack/sync_chart_crds.py), they support
what the chart relies on (the scale subresource an HPA targets), and the JobQueues the chart
renders are valid against the CRD's own schema.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml
from chart_support import CHART, ROOT, VALUE_SETS, find, manifests

SOURCE_CRD = ROOT / "crds" / "jobqueue.yaml"


def _sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart_crds", ROOT / "hack" / "sync_chart_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crds_do_not_drift_from_crds_dir() -> None:
    assert _sync_module().drift() == [], "run: python hack/sync_chart_crds.py"


def test_helm_loads_exactly_the_crds_of_the_crds_dir() -> None:
    with helm.Chart.load(CHART) as chart:
        loaded = {c["filename"].rsplit("/", 1)[-1] for c in chart.crds}
    assert loaded == {p.name for p in (ROOT / "crds").glob("*.yaml")}


def test_sync_copies_adds_and_removes(tmp_path: Path) -> None:
    mod = _sync_module()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.yaml").write_text("a: 1\n")
    (dst / "a.yaml").write_text("a: 0\n")
    (dst / "old.yaml").write_text("x: 1\n")
    (src / "b.yaml").write_text("b: 1\n")
    assert len(mod.drift(src, dst)) == 3
    mod.sync(src, dst)
    assert mod.drift(src, dst) == []
    assert sorted(p.name for p in dst.iterdir()) == ["a.yaml", "b.yaml"]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    if not SOURCE_CRD.exists():
        pytest.skip("crds/jobqueue.yaml is not written yet (operator issue)")
    doc: dict[str, Any] = yaml.safe_load(SOURCE_CRD.read_text())
    return doc


def _served_version(crd: dict[str, Any], name: str = "v1alpha1") -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == name]
    return version  # type: ignore[no-any-return]


def test_crd_is_valid_kubernetes_and_has_the_scale_subresource_the_hpa_targets(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, "1.37.0", strict=True)
    assert crd["spec"]["group"] == "jobqueue.dev"
    assert crd["spec"]["names"]["kind"] == "JobQueue"
    assert "jq" in crd["spec"]["names"].get("shortNames", [])
    scale = _served_version(crd)["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"
    assert scale["statusReplicasPath"] == ".status.replicas"
    assert scale.get("labelSelectorPath") == ".status.selector"


@pytest.mark.parametrize(
    "name", [n for n, v in VALUE_SETS.items() if v.get("exampleJobQueue", {}).get("enabled")] or ["none"]
)
def test_the_charts_example_jobqueue_is_valid_against_the_crd_schema(crd: dict[str, Any], name: str) -> None:
    schema = _served_version(crd)["schema"]["openAPIV3Schema"]
    (jq,) = find(manifests(VALUE_SETS[name]), "JobQueue")
    # A CRD schema is OpenAPI v3.0, i.e. draft 4 semantics (boolean exclusiveMinimum).
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(jq)
