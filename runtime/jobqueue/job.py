"""The job as it travels through Redis (JSON), and as a handler receives it."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import SchemaSerializer, core_schema

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def new_job_id() -> str:
    """32 random hex digits (128 bits), the shape uuid4().hex had, at a fraction of its cost."""
    return os.urandom(16).hex()


_stamp_cache: list[tuple[int, str]] = [(-1, "")]
"""[(second, "YYYY-MM-DDTHH:MM:SS.")] of the last stamp: one tuple, so threads never see a torn pair."""

_MILLIS_Z: tuple[str, ...] = tuple(f"{ms:03d}Z" for ms in range(1000))


def rfc3339_now() -> str:
    """Now as RFC 3339 UTC with milliseconds and Z, e.g. ``2024-05-01T12:00:00.123Z``.

    The second's prefix is formatted once per second; most calls only look up the milliseconds.
    """
    sec, ms = divmod(time.time_ns() // 1_000_000, 1000)
    cached_sec, prefix = _stamp_cache[0]
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        _stamp_cache[0] = (sec, prefix)
    return prefix + _MILLIS_Z[ms]


_SER_JSON_INF_NAN: Literal["constants"] = "constants"

_FIELDS_SERIALIZER = SchemaSerializer(
    core_schema.any_schema(), core_schema.CoreConfig(ser_json_inf_nan=_SER_JSON_INF_NAN)
)


def dump_job_fields(fields: dict[str, Any]) -> bytes:
    """JSON of a job given as a plain dict of already valid field values, in ``Job``'s field order
    and with the None ones left out: the bytes ``Job(**fields).model_dump_json(exclude_none=True)``
    gives, without building the model (the enqueue hot path). The payload is serialised with the
    model's settings (NaN/Infinity as tokens, nested models without their None fields).

    Raises PydanticSerializationError for a value JSON cannot carry.
    """
    return _FIELDS_SERIALIZER.to_json(fields, exclude_none=True)


class Job(BaseModel):
    """One unit of work. Immutable once enqueued; ``retries`` is filled in from Redis at claim.

    Seed-compatible fields: id, priority, retries, creation_time, filepath, filesize, trace ids.
    """

    # Non-finite floats are written as NaN/Infinity tokens (not silently as null) so that
    # Queue.build can find and refuse them: JSON cannot carry them.
    model_config = ConfigDict(extra="allow", frozen=True, ser_json_inf_nan=_SER_JSON_INF_NAN)

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
    lease_until_ms: int = 0
    """When this worker's lease runs out unless renewed (0: unknown); set by the worker."""
