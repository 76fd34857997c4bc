"""Queue.build's fast path (plain fields serialised without a Job model) against the model path.

The reference below is the model-based build as it was before the fast path, verbatim except
that the generated id and creation time are injected, so both sides can be compared byte for
byte: for every input the fast path must give the same EnqueueItem (id, priority, JSON bytes,
due time, max_retries) or refuse with the same EnqueueError message.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import math
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticSerializationError

import jobqueue.api
from jobqueue import EnqueueError, JobSpec, Queue, build_config
from jobqueue.api import _has_non_finite
from jobqueue.batching import GroupCommit
from jobqueue.broker import EnqueueItem
from jobqueue.clock import FakeClock
from jobqueue.job import Job, new_job_id, rfc3339_now

LIMIT = 1024
GEN_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
NOW = "2024-02-29T23:59:59.999Z"


def make_queue() -> Queue:
    cfg = build_config(
        {
            "queue_name": "fast",
            "redis": {"url": "redis://127.0.0.1:1/0"},  # never connected: build does no I/O
            "worker": {"priorities": ["high", "low"], "max_retries": 4},
            "producer": {"default_priority": "low", "max_payload_bytes": LIMIT},
        }
    )
    return Queue(cfg, clock=FakeClock())


def reference_build(q: Queue, spec: JobSpec) -> EnqueueItem:
    """The model-based Queue.build before the fast path (id and creation time injected)."""
    priority = spec.priority or q.config.producer.default_priority
    if priority not in q.keys.priorities:
        raise EnqueueError(f"unknown priority {priority!r}; configured: {list(q.keys.priorities)}")
    delay_s = spec.delay.total_seconds() if isinstance(spec.delay, timedelta) else (spec.delay or 0.0)
    if delay_s < 0:
        raise EnqueueError("delay must not be negative")
    fields: dict[str, Any] = {
        "type": spec.type,
        "payload": spec.payload,
        "priority": priority,
        "max_retries": spec.max_retries,
        "timeout_s": spec.timeout,
        "filepath": spec.filepath,
        "filesize": spec.filesize,
        "trace_context": spec.trace_context or {},
    }
    fields["id"] = spec.job_id if spec.job_id is not None else GEN_ID
    fields["creation_time"] = NOW
    try:
        job = Job(**fields)
        data = job.model_dump_json(exclude_none=True).encode()
    except ValidationError as err:
        first = err.errors()[0]
        raise EnqueueError(f"invalid job: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    except PydanticSerializationError as err:
        raise EnqueueError(f"payload is not JSON-serialisable: {err}") from None
    if (b"NaN" in data or b"Infinity" in data) and _has_non_finite(data):
        raise EnqueueError("payload is not JSON-serialisable: it contains NaN or Infinity")
    if len(data) > LIMIT:
        raise EnqueueError(f"job is {len(data)} bytes, over producer.max_payload_bytes={LIMIT}")
    max_retries = spec.max_retries if spec.max_retries is not None else q.config.worker.max_retries
    due = q.clock.now_ms() + int(delay_s * 1000) if delay_s > 0 else 0
    return EnqueueItem(job.id, priority, data, due, max_retries)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except Exception as err:  # the kind and wording are what is compared
        return (type(err).__name__, str(err))


@pytest.fixture
def q(monkeypatch: pytest.MonkeyPatch) -> Queue:
    monkeypatch.setattr(jobqueue.api, "new_job_id", lambda: GEN_ID)
    monkeypatch.setattr(jobqueue.api, "rfc3339_now", lambda: NOW)
    return make_queue()


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the model path is taken: the inputs of the test must all be served by the fast path."""

    def refuse(*_: object) -> tuple[str, bytes]:
        raise AssertionError("the model path was taken")

    monkeypatch.setattr(jobqueue.api, "_model_json", refuse)


# ------------------------------------------------------------------ payloads of every kind


class Colour(enum.Enum):
    RED = "red"


class Inner(BaseModel):
    value: int | None = None
    aliased: str = Field("a", alias="Aliased")
    ratio: float = 0.5


@dataclasses.dataclass
class Point:
    x: int
    y: float | None = None


PAYLOADS: list[Any] = [
    None,
    0,
    -1,
    2**70,
    -(2**64),
    True,
    0.1,
    -0.0,
    1e16,
    1e-7,
    5e-324,
    1.7976931348623157e308,
    "",
    "plain",
    'quotes " and \\ backslash',
    "controls \n\t\r\x00\x1f",
    "unicode é ü 日本 \u2028\u2029 😀",
    "NaN and Infinity are fine as strings",
    [],
    {},
    [1, "two", 3.0, None, [{"deep": [[]]}]],
    {"a": None, "b": {"c": [None, {"d": None}]}},
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    (1, 2, (3,)),
    {3},
    frozenset({"x"}),
    b"utf-8 bytes \xc3\xa9",
    datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    datetime(2024, 1, 2, 3, 4, 5),
    date(2024, 2, 29),
    timedelta(days=1, seconds=3, microseconds=5),
    decimal.Decimal("1.10"),
    uuid.UUID(int=5),
    Colour.RED,
    Path("/a/b"),
    Inner(),
    Inner(ratio=math.nan),  # a nested model writes NaN by its own settings: null
    Inner(value=3, Aliased="z"),
    {"model": Inner(), "point": Point(1)},
    Point(2, 3.5),
    "x" * (LIMIT - 300),
]

FIELDS: list[dict[str, Any]] = [
    {},
    {"type": "email.send"},
    {"type": 'ünïcode "type"\n'},
    {"priority": "high"},
    {"priority": "low", "job_id": "a"},
    {"job_id": "x" * 200},
    {"job_id": "A-z_0.9:colon"},
    {"max_retries": 0},
    {"max_retries": 7},
    {"timeout": 0.001},
    {"timeout": 5},
    {"timeout": 2**53},
    {"timeout": 1e300},
    {"filepath": ""},
    {"filepath": "/tmp/ü.txt", "filesize": 0},
    {"filesize": 10**15},
    {"trace_context": {}},
    {"trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": ""}},
    {"delay": 1.5},
    {"delay": timedelta(minutes=2)},
    {"delay": 0},
    {
        "type": "all",
        "priority": "high",
        "delay": 0.25,
        "job_id": "all-fields",
        "max_retries": 2,
        "timeout": 9.5,
        "filepath": "/p",
        "filesize": 12,
        "trace_context": {"traceparent": "t"},
    },
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: repr(p)[:30])
def test_fast_path_writes_the_model_paths_bytes_for_any_payload(q: Queue, no_model: None, payload: Any) -> None:
    spec = JobSpec("t", payload, job_id="p1")
    item = q.build(spec)
    assert item == reference_build(q, spec)


@pytest.mark.parametrize("fields", FIELDS, ids=lambda f: ",".join(f) or "defaults")
def test_fast_path_writes_the_model_paths_bytes_for_every_field(
    q: Queue, no_model: None, fields: dict[str, Any]
) -> None:
    spec = JobSpec(payload={"n": 1, "f": 0.5}, **fields)
    item = q.build(spec)
    assert item == reference_build(q, spec)
    job = Job.model_validate_json(item.data)  # what the worker decodes
    assert job == Job.model_validate_json(reference_build(q, spec).data)
    assert job.id == (fields.get("job_id") or GEN_ID) and job.creation_time == NOW and job.retries == 0


# ------------------------------------------------------------------ inputs the model converts or refuses


class Text(str):
    pass


ODD: list[dict[str, Any]] = [
    {"type": Text("subclass")},
    {"job_id": Text("sub-id")},
    {"job_id": "trailing-newline\n"},  # the model's pattern lets it through; still the model's call
    {"max_retries": True},
    {"max_retries": 3.0},
    {"max_retries": "3"},
    {"timeout": True},
    {"timeout": "2.5"},
    {"timeout": 2**53 + 1},
    {"timeout": 10**400},
    {"timeout": math.inf},
    {"filesize": False},
    {"filesize": 4.0},
    {"filepath": PurePosixPath("/p")},
    {"trace_context": {"k": Text("v")}},
    {"trace_context": {"k": 1}},
    {"trace_context": []},
    {"trace_context": ""},
    {"priority": Text("high")},
]


@pytest.mark.parametrize("fields", ODD, ids=lambda f: repr(f)[:40])
def test_unusual_fields_take_the_model_path_with_the_same_outcome(q: Queue, fields: dict[str, Any]) -> None:
    spec = JobSpec(payload=[1], **fields)
    assert outcome(q.build, spec) == outcome(reference_build, q, spec)


def circular() -> list[Any]:
    x: list[Any] = []
    x.append(x)
    return x


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"priority": "urgent"}, "unknown priority 'urgent'; configured: ['high', 'low']"),
    ({"priority": ["high"]}, "unknown priority ['high']"),
    ({"delay": -1}, "delay must not be negative"),
    ({"delay": -0.001}, "delay must not be negative"),
    ({"delay": timedelta(seconds=-1)}, "delay must not be negative"),
    ({"job_id": ""}, "invalid job: id: Value error, job id must be 1-200 characters"),
    ({"job_id": "a/b"}, "invalid job: id: Value error, job id must be"),
    ({"job_id": "with space"}, "invalid job: id: Value error"),
    ({"job_id": "é"}, "invalid job: id: Value error"),
    ({"job_id": "x" * 201}, "invalid job: id: Value error"),
    ({"job_id": 12}, "invalid job: id: Input should be a valid string"),
    ({"type": None}, "invalid job: type: Input should be a valid string"),
    ({"max_retries": -1}, "invalid job: max_retries: Input should be greater than or equal to 0"),
    ({"max_retries": 1.5}, "invalid job: max_retries: Input should be a valid integer"),
    ({"timeout": 0}, "invalid job: timeout_s: Input should be greater than 0"),
    ({"timeout": -2.5}, "invalid job: timeout_s: Input should be greater than 0"),
    ({"timeout": math.nan}, "invalid job: timeout_s"),
    ({"filesize": -1}, "invalid job: filesize: Input should be greater than or equal to 0"),
    ({"filepath": 3}, "invalid job: filepath: Input should be a valid string"),
    ({"trace_context": {"k": 1}}, "invalid job: trace_context.k: Input should be a valid string"),
    ({"payload": object()}, "payload is not JSON-serialisable: Unable to serialize unknown type: <class 'object'>"),
    ({"payload": {"f": len}}, "payload is not JSON-serialisable: Unable to serialize unknown type"),
    ({"payload": b"\xff\xfe"}, "payload is not JSON-serialisable: Error serializing to JSON: invalid utf-8"),
    ({"payload": circular()}, "payload is not JSON-serialisable: Error serializing to JSON: ValueError: Circular"),
    ({"payload": math.nan}, "payload is not JSON-serialisable: it contains NaN or Infinity"),
    ({"payload": {"x": [math.inf]}}, "payload is not JSON-serialisable: it contains NaN or Infinity"),
    ({"payload": -math.inf}, "payload is not JSON-serialisable: it contains NaN or Infinity"),
    ({"payload": PurePosixPath("/p")}, "payload is not JSON-serialisable: Unable to serialize unknown type"),
    ({"timeout": math.inf}, "payload is not JSON-serialisable: it contains NaN or Infinity"),
    ({"payload": "x" * LIMIT}, f"over producer.max_payload_bytes={LIMIT}"),
    ({"payload": "é" * (LIMIT // 2)}, f"over producer.max_payload_bytes={LIMIT}"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSED, ids=lambda v: repr(v)[:40])
async def test_refusals_are_worded_as_before(q: Queue, fields: dict[str, Any], message: str) -> None:
    fields = {"type": "t", "payload": 1, **fields}
    spec = JobSpec(**fields)
    expected = outcome(reference_build, q, spec)
    assert expected[0] == "EnqueueError" and message in expected[1], expected
    assert outcome(q.build, spec) == expected

    async def send(items: list[EnqueueItem]) -> list[bool]:
        raise AssertionError("a refused job was sent")

    q._group = GroupCommit(send)
    with pytest.raises(EnqueueError) as refused:
        await q.enqueue(**fields)
    assert str(refused.value) == expected[1]


# ------------------------------------------------------------------ property: any input, same outcome

texts = st.text(max_size=12)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["NaN", "Infinity", "-Infinity", '"NaN"', b"bytes", object(), (1, 2), Colour.RED, Inner()]),
)
payloads = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ids = st.one_of(
    st.none(),
    st.from_regex(r"[A-Za-z0-9_.:\-]{1,20}", fullmatch=True),
    st.text(max_size=10),
    st.just("x" * 200),
    st.just("x" * 201),
)
ints = st.one_of(st.none(), st.integers(min_value=-3, max_value=10**18), st.booleans())
timeouts = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-5, max_value=2**60)
)
delays = st.one_of(
    st.none(),
    st.floats(min_value=-10, max_value=1e6),
    st.integers(min_value=-2, max_value=10**6),
    st.just(timedelta(0)),
)
trace_contexts = st.one_of(st.none(), st.dictionaries(texts, texts, max_size=3), st.just({"k": 1}))


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    return JobSpec(
        type=draw(st.one_of(texts, st.just(""))),
        payload=draw(payloads),
        priority=draw(st.one_of(st.none(), st.sampled_from(["high", "low", "urgent", ""]))),
        delay=draw(delays),
        job_id=draw(ids),
        max_retries=draw(ints),
        timeout=draw(timeouts),
        filepath=draw(st.one_of(st.none(), texts)),
        filesize=draw(ints),
        trace_context=draw(trace_contexts),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs())
def test_any_spec_builds_or_is_refused_exactly_as_by_the_model(q: Queue, spec: JobSpec) -> None:
    fast = outcome(q.build, spec)
    assert fast == outcome(reference_build, q, spec)
    if fast[0] == "ok":
        job = Job.model_validate_json(fast[1].data)
        assert json.loads(fast[1].data) == json.loads(job.model_dump_json(exclude_none=True))


# ------------------------------------------------------------------ enqueue, ids and timestamps


async def test_enqueue_sends_the_built_item_and_returns_its_id() -> None:
    q = make_queue()
    sent: list[EnqueueItem] = []

    async def send(items: list[EnqueueItem]) -> list[bool]:
        sent.extend(items)
        return [True] * len(items)

    q._group = GroupCommit(send)
    job_id = await q.enqueue("t", {"a": 1}, priority="high", delay=2, max_retries=1, timeout=3)
    assert [it.id for it in sent] == [job_id] and re.fullmatch(r"[0-9a-f]{32}", job_id)
    job = Job.model_validate_json(sent[0].data)
    assert (job.type, job.payload, job.priority, job.max_retries, job.timeout_s) == ("t", {"a": 1}, "high", 1, 3.0)
    assert (sent[0].due_ms, sent[0].max_retries) == (q.clock.now_ms() + 2000, 1)
    # The extra fields of JobSpec still pass through enqueue, and anything else is still refused.
    assert await q.enqueue("t", job_id="e1", filepath="/f", filesize=2, trace_context={"traceparent": "p"}) == "e1"
    job = Job.model_validate_json(sent[-1].data)
    assert (job.filepath, job.filesize, job.trace_context) == ("/f", 2, {"traceparent": "p"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        await q.enqueue("t", colour="red")


def test_generated_ids_are_32_hex_digits_and_unique() -> None:
    generated = {new_job_id() for _ in range(1000)}
    assert len(generated) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in generated)
    assert re.fullmatch(r"[0-9a-f]{32}", make_queue().build(JobSpec("t")).id)


def _iso_ms(ns: int) -> str:
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "ns",
    [
        0,
        1_709_251_199_999_999_999,  # the last nanosecond of 2024-02-29
        1_709_251_200_000_000_000,  # the next second, a new prefix
        1_709_251_200_000_999_999,
        1_709_251_200_001_000_000,
        1_735_689_599_998_500_000,  # 2024-12-31T23:59:59.998
        1_735_689_600_000_000_000,  # a new year
        4_102_444_800_123_456_789,  # 2100
    ],
)
def test_creation_time_is_rfc3339_utc_with_milliseconds(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    assert rfc3339_now() == _iso_ms(ns)


def test_creation_time_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_700_000_000_000_000_000]
    monkeypatch.setattr(time, "time_ns", lambda: now[0])
    seen = []
    for step in [0, 999_000_000, 1_000_000, 5_000_000_000, -3_000_000_000, 1]:  # forwards, and back
        now[0] += step
        seen.append((rfc3339_now(), _iso_ms(now[0])))
    assert all(got == want for got, want in seen)


def test_creation_time_is_now() -> None:
    stamp = make_queue().build(JobSpec("t"))
    created = Job.model_validate_json(stamp.data).creation_time
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created)
    assert abs(datetime.fromisoformat(created) - datetime.now(UTC)) < timedelta(seconds=5)
