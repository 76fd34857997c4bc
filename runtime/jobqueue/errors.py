"""Exceptions of jobqueue: one root, and the two signals handler authors raise."""

from __future__ import annotations

from datetime import timedelta


class JobQueueError(Exception):
    """Root of every error raised by jobqueue."""


class ConfigError(JobQueueError):
    """The configuration is invalid; ``problems`` holds one 'field.path: reason' line each."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}: " + "; ".join(problems))


class RetryJob(JobQueueError):
    """Raised by a handler to run the job again after ``delay`` (counts as an attempt)."""

    def __init__(self, delay: float | timedelta | None = None, reason: str = "retry requested") -> None:
        self.delay_s = delay.total_seconds() if isinstance(delay, timedelta) else delay
        super().__init__(reason)


class PermanentJobError(JobQueueError):
    """Raised by a handler when retrying cannot help: the job goes to the dead-letter queue now."""


class EnqueueError(JobQueueError):
    """A job was refused at enqueue (too large, not serialisable, unknown priority)."""


class LeaseLost(JobQueueError):
    """The worker's lease on a job was taken over; its result must not be recorded."""


class JobNotFound(JobQueueError):
    """No job with that id exists."""


class RedisUnavailable(JobQueueError):
    """Redis could not be reached or refused us (auth, TLS); the message says which.

    ``retryable`` is True when waiting may help (nothing answered), False when it cannot
    (wrong credentials, untrusted certificate, an error reply)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


#: Stable script error codes -> exception types (asynq's errors.E(op, code)).
SCRIPT_ERRORS: dict[str, type[JobQueueError]] = {
    "LEASE_LOST": LeaseLost,
    "NOT_FOUND": JobNotFound,
}
