"""The job as it travels through Redis (JSON), and as a handler receives it."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def new_job_id() -> str:
    return uuid.uuid4().hex


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Job(BaseModel):
    """One unit of work. Immutable once enqueued; ``retries`` is filled in from Redis at claim.

    Seed-compatible fields: id, priority, retries, creation_time, filepath, filesize, trace ids.
    """

    # Non-finite floats are written as NaN/Infinity tokens (not silently as null) so that
    # Queue.build can find and refuse them: JSON cannot carry them.
    model_config = ConfigDict(extra="allow", frozen=True, ser_json_inf_nan="constants")

    id: str = Field(default_factory=new_job_id)
    type: str = ""
    """Registered handler name; "" runs the configured default handler (worker.handler)."""
    payload: Any = None
    """Arbitrary JSON given to the handler."""
    priority: str = "low"
    retries: int = Field(0, ge=0)
    """Attempts made before this one (failed, timed out or lost with a crashed worker)."""
    creation_time: str = Field(default_factory=rfc3339_now)
    """RFC 3339 UTC time of enqueue."""
    max_retries: int | None = Field(None, ge=0)
    """Overrides worker.max_retries for this job."""
    timeout_s: float | None = Field(None, gt=0)
    """Overrides worker.job_timeout for this job (seconds)."""
    trace_context: dict[str, str] = Field(default_factory=dict)
    """W3C trace context (traceparent, tracestate) of the enqueueing span."""
    filepath: str | None = None
    filesize: int | None = Field(None, ge=0)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not ID_PATTERN.match(v):
            raise ValueError("job id must be 1-200 characters of [A-Za-z0-9_.:-]")
        return v

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, ..."""
        return self.retries + 1


@dataclass(slots=True)
class ClaimedJob:
    """A job leased to this worker: the decoded job (or why it could not be decoded) and the lease.

    A plain dataclass, not a model: it is built for every claimed job on the hot path.
    """

    id: str
    token: str
    priority: str
    attempts: int
    ready_ms: int
    raw: bytes
    is_raw_entry: bool
    job: Job | None = None
    decode_error: str | None = None
