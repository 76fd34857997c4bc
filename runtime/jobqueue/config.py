"""The one configuration model for every role, and its loader (YAML file + environment).

The operator renders this same model into worker ConfigMaps, so the schema, the defaults
and the documentation cannot drift apart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from jobqueue.durations import Duration
from jobqueue.errors import ConfigError

log = logging.getLogger(__name__)

#: Seed keys that the new design makes meaningless (Redis key names are built by
#: jobqueue.keys; fetching no longer blocks per queue). Accepted, reported once, dropped.
IGNORED_KEYS: frozenset[str] = frozenset(
    {
        "redis.min_idle_conns",
        "worker.queues",
        "worker.processing_list_pattern",
        "worker.heartbeat_key_pattern",
        "worker.completed_list",
        "worker.dead_letter_list",
        "worker.brpoplpush_timeout",
        "producer.rate_limit_key",
    }
)


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, validate_default=True, use_attribute_docstrings=True
    )


class TLSConfig(_Section):
    enabled: bool = False
    """Use TLS (implied by a rediss:// url). Default false."""
    ca_file: str | None = None
    """PEM file of the CA that signed the server certificate. Default: system trust store."""
    cert_file: str | None = None
    """Client certificate (PEM) for mutual TLS. Default none."""
    key_file: str | None = None
    """Client private key (PEM) for mutual TLS. Default none."""
    insecure_skip_verify: bool = False
    """Do not verify the server certificate. Default false; for testing only."""


class RedisConfig(_Section):
    addr: str = "localhost:6379"
    """host:port of Redis. Default localhost:6379. Ignored when url is set."""
    url: str | None = None
    """redis:// or rediss:// URL; overrides addr, and its credentials and db override the fields below."""
    username: str | None = None
    """ACL user name. Default none (the default user)."""
    password: SecretStr | None = None
    """Password; never logged. Default none."""
    db: int = Field(0, ge=0)
    """Logical database number. Default 0."""
    tls: TLSConfig = TLSConfig()
    pool_size_multiplier: int = Field(10, ge=1, le=1000)
    """Connection pool size per CPU core, as in the seed. Default 10."""
    dial_timeout: Duration = timedelta(seconds=5)
    """Connect timeout. Default 5s."""
    read_timeout: Duration = timedelta(seconds=3)
    """Socket read timeout for ordinary commands (blocking waits use their own). Default 3s."""
    write_timeout: Duration = timedelta(seconds=3)
    """Socket write timeout. Default 3s."""
    max_retries: int = Field(3, ge=0, le=100)
    """Retries of a command on a connection error, with exponential backoff. Default 3."""
    connect_wait: Duration = timedelta(seconds=60)
    """At start-up, how long to wait for a Redis that does not answer yet before exiting 1
    (wrong credentials or an untrusted certificate fail at once). 0 fails at once. Default 60s."""

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (redact_url(value) if key == "url" and isinstance(value, str) else value)

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and v != "" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v or None

    @field_validator("addr")
    @classmethod
    def _addr_shape(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. localhost:6379")
        return v


class BackoffConfig(_Section):
    base: Duration = timedelta(milliseconds=500)
    """Delay before the first retry; doubles each attempt. Default 500ms."""
    max: Duration = timedelta(seconds=10)
    """Cap on the retry delay. Default 10s."""
    jitter: float = Field(0.2, ge=0.0, le=1.0)
    """Random spread as a fraction of the delay (0.2 = ±20%). Default 0.2."""

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.base.total_seconds() < 0 or self.max < self.base:
            raise ValueError("need 0 <= base <= max")
        return self


class WorkerConfig(_Section):
    count: int = Field(16, ge=1, le=10_000)
    """Jobs run concurrently by one worker process. Default 16."""
    heartbeat_ttl: Duration = timedelta(seconds=30)
    """Lease length: a job whose worker stops renewing is recovered after this. Default 30s."""
    max_retries: int = Field(3, ge=0, le=1000)
    """Retries after the first failed attempt before the dead-letter queue. Default 3."""
    backoff: BackoffConfig = BackoffConfig()
    priorities: list[str] = Field(default_factory=lambda: ["high", "low"], min_length=1)
    """Priority names, highest first. Default [high, low]."""
    prefetch: int = Field(0, ge=0, le=10_000)
    """Jobs claimed ahead of free slots and held (leased) locally, so a finished job's slot refills
    without a round trip. Raises the throughput of short jobs; a prefetched job waits behind this
    process's running ones instead of going to an idle worker. Default 0."""
    handoff: bool = True
    """While a worker has free slots and the queue is dry, enqueue leases new jobs straight to it
    and it starts them on the reply to its blocking read: no claim round trip, so the lowest
    pickup latency. Off: idle workers are woken and then claim. Default true."""
    handler: str = "jobqueue.handlers:process_file"
    """Import path (module:function) of the handler for jobs without a type. Default: file simulation."""
    handler_modules: list[str] = Field(default_factory=list)
    """Modules imported at start so their @jobqueue.job handlers register. Default none."""
    job_timeout: Duration = timedelta(minutes=5)
    """Per-job time limit; a job over it fails and is retried. 0 disables. Default 5m."""
    shutdown_timeout: Duration = timedelta(seconds=25)
    """On SIGTERM, how long in-flight jobs may finish before they are requeued. Default 25s."""
    reaper_interval: Duration = timedelta(seconds=5)
    """How often the reaper looks for expired leases. Default 5s."""
    completed_keep: int = Field(1000, ge=0)
    """Completed jobs kept for inspection (newest first); 0 keeps none. Default 1000."""
    completed_ttl: Duration = timedelta(minutes=5)
    """How long a completed job's id is remembered, so enqueueing the same id again (a producer
    retrying after a lost reply) is ignored instead of run twice; ~100 bytes per job. 0 disables.
    Default 5m."""
    thread_pool_size: int = Field(0, ge=0)
    """Threads for sync handlers; 0 means worker.count. Default 0."""

    @field_validator("priorities")
    @classmethod
    def _unique_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"priority name {name!r} must be non-empty [A-Za-z0-9_-]")
        if len(set(v)) != len(v):
            raise ValueError("priority names must be unique")
        return v

    @field_validator("handler")
    @classmethod
    def _import_path(cls, v: str) -> str:
        module, sep, attr = v.partition(":")
        if not sep or not module or not attr:
            raise ValueError("must be an import path 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _lease_vs_timeouts(self) -> WorkerConfig:
        if self.heartbeat_ttl < timedelta(seconds=1):
            raise ValueError("heartbeat_ttl must be at least 1s")
        return self


class ProducerConfig(_Section):
    scan_dir: str = "./data"
    """Directory walked by the producer role. Default ./data."""
    include_globs: list[str] = Field(default_factory=lambda: ["**/*"])
    """Files to enqueue, relative to scan_dir; ** matches any depth. Default [**/*]."""
    exclude_globs: list[str] = Field(default_factory=lambda: ["**/*.tmp", "**/.DS_Store"])
    """Files to skip. Default [**/*.tmp, **/.DS_Store]."""
    default_priority: str = "low"
    """Priority of files without a high-priority extension. Default low."""
    high_priority_exts: list[str] = Field(default_factory=lambda: [".pdf", ".docx", ".xlsx", ".zip"])
    """Extensions enqueued as the first (highest) priority. Default [.pdf, .docx, .xlsx, .zip]."""
    rate_limit_per_sec: int = Field(100, ge=0)
    """Jobs per second across all producers (fixed 1s window in Redis); 0 = unlimited. Default 100."""
    max_payload_bytes: int = Field(1024 * 1024, ge=256)
    """Largest serialised job accepted by enqueue. Default 1 MiB."""


class CircuitBreakerConfig(_Section):
    enabled: bool = True
    """Gate claims on the recent failure rate. Default true."""
    failure_threshold: float = Field(0.5, gt=0.0, le=1.0)
    """Failure fraction in the window that opens the breaker. Default 0.5."""
    window: Duration = timedelta(minutes=1)
    """Rolling window of outcomes considered. Default 1m."""
    cooldown_period: Duration = timedelta(seconds=30)
    """Time open before one probe job is let through (half-open). Default 30s."""
    min_samples: int = Field(20, ge=1)
    """Outcomes needed in the window before the breaker may open. Default 20."""


class TracingConfig(_Section):
    enabled: bool = False
    """Export OpenTelemetry spans (needs the jobqueue[tracing] extra). Default false."""
    endpoint: str = ""
    """OTLP endpoint, e.g. http://otel-collector:4318/v1/traces or grpc://collector:4317."""
    protocol: Literal["http", "grpc"] = "http"
    """OTLP transport. Default http."""
    service_name: str = "jobqueue"
    """service.name resource attribute. Default jobqueue."""
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    """Fraction of new traces sampled (children follow their parent). Default 1.0."""


class ObservabilityConfig(_Section):
    metrics_port: int = Field(9090, ge=0, le=65535)
    """Port of /metrics, /healthz and /readyz; 0 disables the server. Default 9090."""
    metrics_host: str = "0.0.0.0"
    """Address the HTTP server binds. Default 0.0.0.0."""
    log_level: Literal["debug", "info", "warning", "warn", "error", "critical"] = "info"
    """Minimum log level. Default info."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """json lines, readable console, or auto (console on a terminal). Default auto."""
    queue_sample_interval: Duration = timedelta(seconds=2)
    """Minimum interval between reads of queue-wide figures from Redis. Default 2s."""
    tracing: TracingConfig = TracingConfig()

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class Config(_Section):
    queue_name: str = Field("default", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Logical queue: all its Redis keys share the hash tag {queue_name}. Default 'default'."""
    redis: RedisConfig = RedisConfig()
    worker: WorkerConfig = WorkerConfig()
    producer: ProducerConfig = ProducerConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    observability: ObservabilityConfig = ObservabilityConfig()

    @model_validator(mode="after")
    def _priority_known(self) -> Config:
        if self.producer.default_priority not in self.worker.priorities:
            raise ValueError(
                f"producer.default_priority {self.producer.default_priority!r} "
                f"is not one of worker.priorities {self.worker.priorities}"
            )
        return self

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe dump with secrets masked, for logs and `admin config`."""
        data = self.model_dump(mode="json")
        if self.redis.password is not None:
            data["redis"]["password"] = "***"
        if self.redis.url:
            data["redis"]["url"] = redact_url(self.redis.url)
        return data


def redact_url(url: str) -> str:
    """Mask the password of a redis:// URL."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else f"{scheme}://***@{host}"


# --------------------------------------------------------------------------- loading


def _leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaf_paths(ann, (*prefix, name))
        else:
            yield (*prefix, name)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from variables like WORKER_COUNT or CIRCUIT_BREAKER_MIN_SAMPLES."""
    out: dict[str, Any] = {}
    for path in _leaf_paths(Config):
        name = "_".join(path).upper()
        if name in environ:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = _env_value(environ[name])
    return out


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return raw
    return raw


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _strip_ignored(data: dict[str, Any]) -> list[str]:
    found = []
    for dotted in sorted(IGNORED_KEYS):
        section, _, key = dotted.partition(".")
        node = data.get(section)
        if isinstance(node, dict) and key in node:
            del node[key]
            found.append(dotted)
    return found


def format_validation_error(err: ValidationError) -> list[str]:
    """One line per problem: the dotted field path and the reason."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {msg}")
    return lines


class LoadedConfig(BaseModel):
    """A validated config plus what the loader noticed, for the caller to log once."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    config: Config
    source: str | None
    ignored_keys: list[str]


def build_config(data: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Validate a config mapping (plus env overrides) or raise ConfigError listing every problem."""
    return _validate(dict(data or {}), environ, source=None).config


def _validate(data: dict[str, Any], environ: Mapping[str, str] | None, source: str | None) -> LoadedConfig:
    ignored = _strip_ignored(data)
    if environ is not None:
        _merge(data, env_overrides(environ))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err), source=source) from None
    return LoadedConfig(config=cfg, source=source, ignored_keys=ignored)


def load(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read YAML (a missing file means defaults), apply the environment, validate."""
    env = os.environ if environ is None else environ
    data: Any = {}
    source: str | None = None
    if path is not None:
        p = Path(path)
        if p.is_file():
            source = str(p)
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise ConfigError([f"(file): not valid YAML{where}"], source=source) from None
            except OSError as err:
                raise ConfigError([f"(file): cannot read: {err.strerror}"], source=str(p)) from None
            if not isinstance(data, dict):
                raise ConfigError(["(top level): must be a mapping of sections"], source=source)
        elif p.exists():
            raise ConfigError(["(file): is not a regular file"], source=str(p))
    return _validate(data, env, source)


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Public helper: the validated Config for a YAML path (or defaults) plus environment."""
    return load(path, environ).config
