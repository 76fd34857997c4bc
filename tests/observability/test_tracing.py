"""Producer and worker spans share one trace through the job's W3C traceparent, and the worker
span is recorded (the seed's worker spans had an unsampled remote parent and were dropped)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis
from redis_server import RedisServer
from support_obs import eventually

from jobqueue.api import JobSpec, Queue
from jobqueue.config import Config, TracingConfig, build_config
from jobqueue.errors import ConfigError
from jobqueue.handlers import HandlerRegistry
from jobqueue.job import Job
from jobqueue.log import configure_logging
from jobqueue.roles.worker import Worker
from jobqueue.tracing import exporter_for, for_config, log_fields

Spans = tuple[InMemorySpanExporter, TracerProvider]


def provider(sampler: object = None) -> Spans:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=sampler or ParentBased(TraceIdRatioBased(1.0)))  # type: ignore[arg-type]
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, tp


@pytest.fixture
def config(redis_server: RedisServer) -> Config:
    return build_config(
        {
            "queue_name": "traced",
            "redis": {"url": redis_server.url},
            "worker": {"count": 2, "max_retries": 1, "backoff": {"base": "5ms", "max": "5ms"}},
            "observability": {"metrics_port": 0},
        }
    )


@pytest.fixture
def handlers() -> HandlerRegistry:
    reg = HandlerRegistry()

    async def ok(job: Job) -> None:
        pass

    def fails_once(job: Job) -> None:  # sync: runs in a thread, the span context must follow it
        from opentelemetry import trace

        assert trace.get_current_span().get_span_context().is_valid
        if job.retries == 0:
            raise RuntimeError("first try fails")

    reg.register("ok", ok)
    reg.register("fails_once", fails_once)
    return reg


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("info", "json", stream=stream, role="worker")
    yield stream
    logging.getLogger().removeHandler(handler)


async def _process_all(config: Config, redis: Redis, handlers: HandlerRegistry, worker_tracer: object) -> None:
    stop = asyncio.Event()
    worker = Worker(config, redis=redis, registry=handlers, tracer=worker_tracer)
    task = asyncio.create_task(worker.run(stop))

    async def drained() -> bool:
        s = await worker.broker.queue_stats()
        return s.pending + s.in_flight + s.scheduled == 0 and s.counters.get("completed", 0) > 0

    await eventually(drained, "every job completed")
    stop.set()
    async with asyncio.timeout(10):
        await task


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_producer_and_worker_spans_share_a_trace_and_the_worker_span_is_recorded(
    config: Config, redis: Redis, handlers: HandlerRegistry, log_stream: io.StringIO
) -> None:
    producer_spans, producer_tp = provider()
    worker_spans, worker_tp = provider()
    async with Queue(config, redis=redis, tracer=producer_tp.get_tracer("app")) as q:
        job_id = await q.enqueue("ok", priority="high")
        (retried_id,) = await q.enqueue_many([JobSpec(type="fails_once")])
    await _process_all(config, redis, handlers, worker_tp.get_tracer("worker"))

    enqueues = by_name(producer_spans.get_finished_spans(), "jobqueue enqueue")
    assert len(enqueues) == 2 and all(s.kind is SpanKind.PRODUCER for s in enqueues)
    assert enqueues[0].attributes is not None and enqueues[0].attributes["messaging.message.id"] == job_id
    processes = by_name(worker_spans.get_finished_spans(), "jobqueue process")
    assert len(processes) == 3  # ok once, fails_once twice
    for span in processes:
        assert span.kind is SpanKind.CONSUMER and span.context is not None and span.context.trace_flags.sampled
        assert span.parent is not None and span.parent.is_remote
    first = next(s for s in processes if s.attributes and s.attributes["messaging.message.id"] == job_id)
    assert first.context is not None and enqueues[0].context is not None and first.parent is not None
    assert first.context.trace_id == enqueues[0].context.trace_id
    assert first.parent.span_id == enqueues[0].context.span_id
    failed = [s for s in processes if s.attributes and s.attributes["messaging.message.id"] == retried_id]
    assert sorted(s.attributes["jobqueue.attempt"] for s in failed if s.attributes) == [1, 2]
    assert {s.status.status_code for s in failed} == {StatusCode.ERROR, StatusCode.UNSET}

    retry_line = next(
        json.loads(line) for line in log_stream.getvalue().splitlines() if "will retry" in line and retried_id in line
    )
    span = next(s for s in failed if s.status.status_code is StatusCode.ERROR)
    assert span.context is not None
    assert retry_line["trace_id"] == f"{span.context.trace_id:032x}"
    assert retry_line["span_id"] == f"{span.context.span_id:016x}"
    assert retry_line["role"] == "worker" and retry_line["queue"] == "low" and retry_line["attempt"] == 1


async def test_a_job_enqueued_without_tracing_gets_a_recorded_root_span(
    config: Config, redis: Redis, handlers: HandlerRegistry
) -> None:
    worker_spans, worker_tp = provider()
    async with Queue(config, redis=redis) as q:
        assert q.tracing is None  # tracing off: nothing to pay on the enqueue path
        await q.enqueue("ok")
    await _process_all(config, redis, handlers, worker_tp.get_tracer("worker"))
    (span,) = worker_spans.get_finished_spans()
    assert span.parent is None and span.context is not None and span.context.trace_flags.sampled


async def test_an_unsampled_producer_trace_stays_unsampled_on_the_worker(
    config: Config, redis: Redis, handlers: HandlerRegistry
) -> None:
    producer_spans, producer_tp = provider(ParentBased(ALWAYS_OFF))
    worker_spans, worker_tp = provider()
    async with Queue(config, redis=redis, tracer=producer_tp.get_tracer("app")) as q:
        await q.enqueue("ok")
    await _process_all(config, redis, handlers, worker_tp.get_tracer("worker"))
    assert producer_spans.get_finished_spans() == () and worker_spans.get_finished_spans() == ()


def test_tracing_off_costs_nothing_and_on_builds_the_configured_exporter() -> None:
    assert for_config(TracingConfig()) is None
    assert for_config(TracingConfig(enabled=True)) is not None
    http = exporter_for(TracingConfig(enabled=True, endpoint="http://collector:4318"))
    assert http._endpoint == "http://collector:4318/v1/traces"
    grpc = exporter_for(TracingConfig(enabled=True, protocol="grpc", endpoint="grpc://collector:4317"))
    assert type(grpc).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")


def test_log_fields_come_from_the_span_or_else_from_the_jobs_traceparent() -> None:
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert log_fields(None, carrier) == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "parent_span_id": "b7ad6b7169203331",
    }
    assert log_fields(None, {}) == {} and log_fields(None, {"traceparent": "garbage"}) == {}


def test_tracing_without_opentelemetry_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"jobqueue\[tracing\]"):
        for_config(TracingConfig(enabled=True))
