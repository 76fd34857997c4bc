"""jobqueue: a reliable, fast Redis job queue. The public API lives here and only here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jobqueue")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

from jobqueue.api import JobSpec, Queue, SyncQueue
from jobqueue.config import Config, build_config, load_config
from jobqueue.errors import (
    ConfigError,
    EnqueueError,
    JobQueueError,
    PermanentJobError,
    RetryJob,
)
from jobqueue.handlers import HandlerRegistry, job
from jobqueue.job import Job
from jobqueue.roles.worker import Worker

__all__ = [
    "Config",
    "ConfigError",
    "EnqueueError",
    "HandlerRegistry",
    "Job",
    "JobQueueError",
    "JobSpec",
    "PermanentJobError",
    "Queue",
    "RetryJob",
    "SyncQueue",
    "Worker",
    "__version__",
    "build_config",
    "job",
    "load_config",
]
