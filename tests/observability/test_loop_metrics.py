"""The lock-free per-queue children expose exactly what prometheus-client's own would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from jobqueue.metrics import DURATION_BUCKETS, WAIT_BUCKETS, Metrics

OBSERVED = [0.0, 0.001, 0.0010001, 0.0025, 0.3, 1, 299.9, 300, 301, 5000]


def _lines(text: bytes, prefix: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(prefix) and "_created" not in line]


@pytest.mark.parametrize(
    ("attr", "name", "buckets"),
    [
        ("processing", "job_processing_duration_seconds", DURATION_BUCKETS),
        ("wait", "job_queue_wait_seconds", WAIT_BUCKETS),
    ],
)
def test_a_loop_histogram_renders_like_a_prometheus_histogram(attr: str, name: str, buckets: tuple[float, ...]) -> None:
    ours = Metrics()
    ours.preset(["high", "low"])
    reference = CollectorRegistry()
    ref = Histogram(name, "doc", ["queue"], buckets=buckets, registry=reference)
    ref.labels("high")
    for v in OBSERVED:
        getattr(ours.queue("low"), attr).observe(v)
        ref.labels("low").observe(v)
    assert _lines(generate_latest(ours.registry), name) == _lines(generate_latest(reference), name)
    assert getattr(ours.queue("low"), attr).count == len(OBSERVED)


def test_loop_counters_render_like_prometheus_counters_and_refuse_to_go_down() -> None:
    ours = Metrics()
    reference = CollectorRegistry()
    ref = Counter("jobs_completed", "doc", ["queue"], registry=reference)
    for n in (1, 2.5, 0):
        ours.queue("low").completed.inc(n)
        ref.labels("low").inc(n)
    assert _lines(generate_latest(ours.registry), "jobs_completed_total") == _lines(
        generate_latest(reference), "jobs_completed_total"
    )
    with pytest.raises(ValueError, match="non-negative"):
        ours.queue("low").completed.inc(-1)
    assert ours.queue("low").completed.value == 3.5
