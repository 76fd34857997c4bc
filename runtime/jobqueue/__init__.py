"""jobqueue: a reliable, fast Redis job queue. The public API lives here and only here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from jobqueue.config import Config, load_config
from jobqueue.errors import ConfigError, EnqueueError, JobQueueError, PermanentJobError, RetryJob
from jobqueue.job import Job

try:
    __version__ = version("jobqueue")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "Config",
    "ConfigError",
    "EnqueueError",
    "Job",
    "JobQueueError",
    "PermanentJobError",
    "RetryJob",
    "__version__",
    "load_config",
]
