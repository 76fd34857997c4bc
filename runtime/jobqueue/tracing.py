"""OpenTelemetry tracing (the optional extra ``jobqueue[tracing]``): an enqueue span on the
producer side, a process span on the worker side, linked through the W3C ``traceparent`` that
the job carries in ``Job.trace_context``.

The seed's defect was a worker span whose remote parent was rebuilt without its sampled flag,
so a parent-based sampler dropped every worker span. Here the carrier is written and read by the
W3C propagator itself, flags included, and the sampler is ``ParentBased(TraceIdRatioBased)``:
a sampled producer span gives a recorded worker span in the same trace.

Who calls it: the supervisor calls ``setup()`` once per process (an SDK provider exporting over
OTLP, made the global provider); ``Queue`` and ``Worker`` call ``for_config()`` to get a
``JobTracing`` (or None, the zero-cost path, when tracing is off). Tests pass their own tracer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from jobqueue.config import TracingConfig
from jobqueue.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

INSTRUMENTATION = "jobqueue"
_MISSING = (
    "observability.tracing.enabled: OpenTelemetry is not installed; install the tracing extra "
    "(pip install 'jobqueue[tracing]') or set tracing.enabled to false"
)


class JobTracing:
    """The two spans of a job's life, on one tracer."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = tracer
        self._prop = TraceContextTextMapPropagator()
        self._producer = SpanKind.PRODUCER
        self._consumer = SpanKind.CONSUMER

    @contextmanager
    def enqueue(self, queue: str, count: int) -> Iterator[dict[str, str]]:
        """One span per enqueue call; yields the carrier to store in each job's trace_context."""
        attrs: dict[str, Any] = {
            "messaging.system": "jobqueue",
            "messaging.operation": "publish",
            "messaging.destination.name": queue,
            "messaging.batch.message_count": count,
        }
        with self.tracer.start_as_current_span("jobqueue enqueue", kind=self._producer, attributes=attrs):
            carrier: dict[str, str] = {}
            self._prop.inject(carrier)
            yield carrier

    def annotate_ids(self, job_ids: list[str]) -> None:
        """Name the enqueued job(s) on the current enqueue span (the id when there is one job)."""
        from opentelemetry import trace

        span = trace.get_current_span()
        if len(job_ids) == 1:
            span.set_attribute("messaging.message.id", job_ids[0])
        elif job_ids:
            span.set_attribute("jobqueue.first_job_id", job_ids[0])

    @contextmanager
    def process(self, queue: str, job_id: str, priority: str, attempt: int, carrier: dict[str, str]) -> Iterator[Span]:
        """The worker's span around the handler, a child of the producer's span when the job has one.

        Exceptions raised by the handler are recorded on the span (status error) and re-raised.
        """
        parent = self._prop.extract(carrier) if carrier else None
        attrs: dict[str, Any] = {
            "messaging.system": "jobqueue",
            "messaging.operation": "process",
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "jobqueue.priority": priority,
            "jobqueue.attempt": attempt,
        }
        with self.tracer.start_as_current_span(
            "jobqueue process", context=parent, kind=self._consumer, attributes=attrs
        ) as span:
            yield span


def for_config(cfg: TracingConfig, tracer: Tracer | None = None) -> JobTracing | None:
    """A JobTracing on ``tracer``, or on the global provider when tracing is enabled; else None."""
    if tracer is None and not cfg.enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError([_MISSING]) from None
    if tracer is None:
        from jobqueue import __version__

        tracer = trace.get_tracer(INSTRUMENTATION, __version__)
    return JobTracing(tracer)


def setup(cfg: TracingConfig) -> TracerProvider | None:
    """Install an SDK provider exporting over OTLP as the global one (roles only; libraries never do).

    Returns the provider so the caller can ``shutdown()`` it (flushing spans) at exit.
    """
    if not cfg.enabled:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        raise ConfigError([_MISSING]) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter_for(cfg)))
    trace.set_tracer_provider(provider)
    return provider


def exporter_for(cfg: TracingConfig) -> Any:
    """The OTLP span exporter of ``cfg.protocol``; an empty endpoint uses OTEL_EXPORTER_OTLP_* or defaults."""
    endpoint = cfg.endpoint or None
    try:
        if cfg.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            if endpoint is None:
                return Grpc()
            secure = endpoint.startswith("https://")
            target = endpoint.split("://", 1)[-1]
            return Grpc(endpoint=target, insecure=not secure)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        if endpoint is not None and endpoint.rstrip("/").count("/") <= 2:
            endpoint = endpoint.rstrip("/") + "/v1/traces"  # a bare http://host:4318 means the traces path
        return Http(endpoint=endpoint)
    except ImportError:
        raise ConfigError([_MISSING.replace("OpenTelemetry is", f"the OTLP {cfg.protocol} exporter is")]) from None


def log_fields(span: Span | None, carrier: dict[str, str] | None) -> dict[str, str]:
    """trace_id/span_id for a job's log lines: the worker span's, else the trace the job came from."""
    if span is not None:
        ctx = span.get_span_context()
        if ctx.is_valid:
            return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
    parent = (carrier or {}).get("traceparent", "")
    parts = parent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return {"trace_id": parts[1], "parent_span_id": parts[2]}
    return {}
