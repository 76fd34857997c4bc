"""The JobQueue resource as pydantic models: what the operator reads (spec) and writes (status).

The handlers validate every spec with these models, and hack/gen_crd.py generates the CRD's
OpenAPI schema from them (crd.py), so the schema the API server enforces and the one the
operator trusts cannot drift apart. Field names are camelCase on the wire (aliases); Python
code uses snake_case.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "jobqueue.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JobQueue"
PLURAL = "jobqueues"
SINGULAR = "jobqueue"
SHORT_NAMES = ["jq"]

#: Image used when spec.worker.image is empty and JOBQUEUE_WORKER_IMAGE is not set.
DEFAULT_WORKER_IMAGE = "job-queue-system:latest"


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


# --------------------------------------------------------------------------- spec.redis


class SecretAuthRef(_Model):
    name: str = Field(min_length=1)
    """Name of a Secret in the JobQueue's namespace."""
    username_key: str | None = None
    """Key of the ACL user name in the Secret. Default: none (the default user)."""
    password_key: str = "password"
    """Key of the password in the Secret. Default: password."""


class RedisAuth(_Model):
    secret_ref: SecretAuthRef
    """The Secret holding the Redis credentials (never put a password in the spec)."""


class SecretKeyRef(_Model):
    name: str = Field(min_length=1)
    """Name of a Secret in the JobQueue's namespace."""
    key: str = "ca.crt"
    """Key of the PEM data in the Secret. Default: ca.crt."""


class RedisTLS(_Model):
    enabled: bool = False
    """Connect with TLS. Default false."""
    ca_secret_ref: SecretKeyRef | None = None
    """PEM CA that signed the server certificate, from a Secret. Default: the system trust store."""
    insecure_skip_verify: bool = False
    """Do not verify the server certificate (testing only). Default false."""


class RedisSpec(_Model):
    url: str | None = None
    """redis:// or rediss:// URL without a password; overrides host, port and db."""
    host: str = "redis"
    """Redis host name. Default: redis (a Service in the JobQueue's namespace)."""
    port: int = Field(6379, ge=1, le=65535)
    """Redis port. Default 6379."""
    db: int = Field(0, ge=0)
    """Logical database. Default 0."""
    tls: RedisTLS = RedisTLS()
    """TLS settings."""
    auth: RedisAuth | None = None
    """Credentials from a Secret. Default: no authentication."""

    @field_validator("url")
    @classmethod
    def _no_password(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        userinfo = v.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            raise ValueError("must not contain a password; use auth.secretRef")
        return v


# --------------------------------------------------------------------------- spec.worker


class WorkerSpec(_Model):
    image: str | None = None
    """Worker image. Default: the operator's JOBQUEUE_WORKER_IMAGE, else job-queue-system:latest."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Image pull policy. Default IfNotPresent."""
    command: list[str] | None = None
    """Container command. Default: [job-queue-system]."""
    args: list[str] | None = None
    """Container args. Default: [--role=worker, --config=/config/config.yaml]."""
    handler: str | None = None
    """Import path module:function of the job handler (runtime worker.handler). Default: the runtime's."""
    concurrency: int = Field(16, ge=1, le=10_000)
    """Jobs run concurrently by one worker pod (runtime worker.count). Default 16."""
    env: list[dict[str, Any]] = Field(default_factory=list)
    """Extra environment variables (core/v1 EnvVar objects)."""
    resources: dict[str, Any] = Field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    )
    """Container resources (core/v1 ResourceRequirements). Default: 100m CPU, 128Mi..512Mi memory."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node selector of the worker pods."""
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    """Tolerations of the worker pods (core/v1 Toleration objects)."""
    pod_template: dict[str, Any] = Field(default_factory=dict)
    """Overrides merged into the built pod template (metadata, spec; containers merged by name)."""
    termination_grace_period_seconds: int | None = Field(None, ge=1)
    """Pod grace period; must exceed the runtime's worker.shutdown_timeout. Default: that timeout + 10s."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Runtime config overrides (the runtime's YAML sections, e.g. worker.max_retries), validated by it."""


# --------------------------------------------------------------------------- spec.scaling


class HPAScalingPolicy(_Model):
    type: Literal["Pods", "Percent"]
    """Pods: change by at most value pods; Percent: by at most value percent."""
    value: int = Field(ge=1)
    """Amount of change allowed per period."""
    period_seconds: int = Field(ge=1, le=1800)
    """Window the limit applies to (seconds)."""


class HPAScalingRules(_Model):
    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600)
    """Past recommendations considered before changing (seconds). Default: 0 up, 60 down."""
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    """Which policy wins: Max (the largest change), Min, or Disabled (no change). Default Max."""
    policies: list[HPAScalingPolicy] | None = None
    """Rate limits. Default: none (any change at once, after the window)."""


class ScalingBehavior(_Model):
    scale_up: HPAScalingRules | None = None
    """Rules for adding replicas (HPA v2 shape)."""
    scale_down: HPAScalingRules | None = None
    """Rules for removing replicas (HPA v2 shape)."""


class ScalingSpec(_Model):
    mode: Literal["builtin", "hpa"] = "builtin"
    """builtin: the operator scales; hpa: a HorizontalPodAutoscaler drives spec.replicas. Default builtin."""
    min_replicas: int = Field(1, ge=0)
    """Fewest worker pods; 0 allows scale to zero. Default 1."""
    max_replicas: int = Field(10, ge=1)
    """Most worker pods. Default 10."""
    target_jobs_per_worker: int | None = Field(None, ge=1)
    """Backlog one pod should carry. Default: spec.worker.concurrency."""
    activation_threshold: int = Field(0, ge=0)
    """From zero replicas, scale up only when the backlog exceeds this. Default 0."""
    count_in_flight: bool = True
    """Count jobs being run in the backlog. Default true."""
    count_delayed_due: bool = True
    """Count retries and delayed jobs that are due in the backlog. Default true."""
    poll_interval_seconds: float = Field(5.0, ge=0.05, le=3600)
    """How often the backlog is read from Redis (seconds). Default 5."""
    scale_to_zero_delay_seconds: float = Field(300.0, ge=0)
    """Time since the last job finished (or was seen) before scaling to zero (seconds). Default 300."""
    behavior: ScalingBehavior = ScalingBehavior()
    """Stabilization windows and rate policies, in the HPA v2 shape."""
    paused: bool = False
    """Freeze replicas where they are. Default false."""

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} exceeds maxReplicas {self.max_replicas}")
        return self


# --------------------------------------------------------------------------- spec


class JobQueueSpec(_Model):
    replicas: int | None = Field(None, ge=0)
    """Worker pods wanted now; written by the autoscaler (or an HPA, or kubectl scale)."""
    queue_name: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Logical queue name in Redis. Default: the JobQueue's name."""
    redis: RedisSpec = RedisSpec()
    """Where the queue lives."""
    queues: list[str] = Field(default_factory=lambda: ["high", "low"], min_length=1)
    """Priority names, highest first (runtime worker.priorities). Default [high, low]."""
    worker: WorkerSpec = WorkerSpec()
    """The worker Deployment."""
    scaling: ScalingSpec = ScalingSpec()
    """How replicas follow the queue."""

    def target_per_worker(self) -> int:
        return self.scaling.target_jobs_per_worker or self.worker.concurrency


# --------------------------------------------------------------------------- status

ConditionType = Literal["Ready", "RedisReachable", "Active", "Scaling", "Paused"]
CONDITION_TYPES: tuple[str, ...] = ("Ready", "RedisReachable", "Active", "Scaling", "Paused")


class Condition(_Model):
    """metav1.Condition."""

    type: str
    """Ready, RedisReachable, Active, Scaling or Paused."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    observed_generation: int | None = None
    """metadata.generation the condition was set for."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    reason: str
    """CamelCase reason."""
    message: str = ""
    """Human-readable detail."""


class QueueStatus(_Model):
    pending: int = 0
    """Jobs waiting, all priorities."""
    in_flight: int = 0
    """Jobs being run."""
    scheduled: int = 0
    """Delayed jobs and retries waiting for their time."""
    dead_letter: int = 0
    """Jobs in the dead-letter queue."""
    oldest_job_age_seconds: float = 0.0
    """Wait of the oldest pending job (seconds)."""


class JobQueueStatus(_Model):
    observed_generation: int | None = None
    """metadata.generation last reconciled."""
    phase: Literal["Pending", "Running", "Idle", "Paused", "Degraded", "Invalid"] | None = None
    """Pending, Running, Idle (zero replicas), Paused, Degraded (Redis unreachable) or Invalid."""
    replicas: int | None = None
    """Worker pods that exist (the Deployment's status.replicas); the scale subresource reads it."""
    ready_replicas: int | None = None
    """Worker pods ready."""
    desired_replicas: int | None = None
    """Replicas the autoscaler (or HPA) wants."""
    busy_workers: int | None = None
    """Worker processes holding at least one job."""
    selector: str | None = None
    """Label selector of the worker pods (for the scale subresource)."""
    queue: QueueStatus | None = None
    """Queue figures at the last poll."""
    last_scale_time: str | None = None
    """When replicas last changed (RFC 3339)."""
    last_active_time: str | None = None
    """When work was last seen or a job last finished (RFC 3339)."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, RedisReachable, Active, Scaling, Paused."""


class JobQueue(_Model):
    """The whole resource, for schema generation (metadata is left to the API server)."""

    spec: JobQueueSpec = JobQueueSpec()
    status: JobQueueStatus | None = None


def parse_spec(raw: Any) -> JobQueueSpec:
    """Validate a spec mapping (raises pydantic.ValidationError)."""
    return JobQueueSpec.model_validate(dict(raw or {}))
