"""Smoke test of benchmarks/peers.py: its jobqueue adapter and one peer's adapter run a tiny
workload end to end (enqueue, a worker process, processing, idle pickup) in seconds.

The peers are not in the dev extra: the peer test runs where the ``bench`` extra is installed
(``.venv-bench``) and is skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"
TINY = ["--rounds", "1", "--single", "20", "--bulk", "50", "--jobs", "100", "--latency-samples", "2"]


def load_peers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", PEERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module
    spec.loader.exec_module(module)
    return module


async def run_tiny(libs: str) -> dict[str, Any]:
    peers = load_peers()
    out = await peers.run(peers.parse([*TINY, "--min-idle", "0.05", "--libs", libs]))
    table = peers.table(out["results"], 100)
    assert table.count("\n") == 1 + len(out["results"])  # header, rule, one row per library
    results: dict[str, Any] = json.loads(json.dumps(out["results"]))  # what --json writes
    return results


def assert_measured(row: dict[str, Any], bulk: bool) -> None:
    assert row["error"] is None, row["error"]
    assert row["notes"] == []
    assert row["single"] > 0
    assert (row["bulk"] is not None and row["bulk"] > 0) is bulk
    assert row["process"] > 0
    assert row["processed"] == [100]
    assert row["pickup_samples"] == 2
    assert row["pickup_lost"] == 0
    assert 0 < row["pickup_p50_ms"] <= row["pickup_p99_ms"]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_jobqueue_adapter_runs_a_tiny_workload() -> None:
    results = await run_tiny("jobqueue")
    assert_measured(results["jobqueue"], bulk=True)
    assert results["jobqueue"]["process_ratio"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_peer_adapter_runs_a_tiny_workload_beside_jobqueue() -> None:
    pytest.importorskip("huey", reason="the peers come with the bench extra (see benchmarks/README.md)")
    results = await run_tiny("jobqueue,huey")
    assert_measured(results["jobqueue"], bulk=True)
    assert_measured(results["huey"], bulk=True)
    assert results["huey"]["process_ratio"] > 0
