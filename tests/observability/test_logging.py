"""Log lines: one JSON object each with the context fields, console when asked, levels honoured,
and no Redis password in any line or config dump."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from jobqueue.config import build_config, redact_url
from jobqueue.errors import ConfigError
from jobqueue.log import configure_logging, redact, set_context
from jobqueue.redis_conn import describe

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def installed() -> Iterator[list[logging.Handler]]:
    handlers: list[logging.Handler] = []
    yield handlers
    for h in handlers:
        logging.getLogger().removeHandler(h)
    logging.getLogger().setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_message_context_and_extra_fields(installed: list[logging.Handler]) -> None:
    stream = io.StringIO()
    installed.append(configure_logging("info", "json", stream=stream, role="worker"))
    set_context(worker_id="host-1-abc")
    logging.getLogger("jobqueue.worker").info("job failed, will retry", extra={"job_id": "j1", "attempt": 2})
    logging.getLogger("jobqueue.worker").debug("not shown at info")
    (line,) = lines(stream)
    assert line["level"] == "info" and line["message"] == "job failed, will retry"
    assert line["role"] == "worker" and line["worker_id"] == "host-1-abc"
    assert line["job_id"] == "j1" and line["attempt"] == 2
    assert str(line["time"]).endswith("+00:00")


def test_console_format_is_readable_and_auto_picks_json_off_a_terminal(installed: list[logging.Handler]) -> None:
    stream = io.StringIO()
    installed.append(configure_logging("debug", "console", stream=stream, role="admin"))
    logging.getLogger("x").debug("hello", extra={"queue": "high"})
    assert " DEBUG   hello  queue=high role=admin" in stream.getvalue()
    auto = io.StringIO()  # not a terminal
    installed.append(configure_logging("warn", "auto", stream=auto))
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [r["message"] for r in lines(auto)] == ["shown"]


def test_an_unknown_log_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"observability\.log_level"):
        build_config({"observability": {"log_level": "verbose"}})
    with pytest.raises(ConfigError, match="unknown level 'verbose'"):
        configure_logging("verbose")
    assert build_config({"observability": {"log_level": "DEBUG"}}).observability.log_level == "debug"


def test_redis_passwords_never_appear_in_dumps_descriptions_or_log_lines(installed: list[logging.Handler]) -> None:
    url = f"redis://app:{SECRET}@redis.internal:6379/0"
    cfg = build_config({"redis": {"url": url, "password": SECRET}})
    dump = json.dumps(cfg.redacted())
    assert SECRET not in dump and "redis://app:***@redis.internal:6379/0" in dump
    assert SECRET not in describe(cfg.redis)
    assert redact_url(f"rediss://:{SECRET}@h:6380") == "rediss://:***@h:6380"
    stream = io.StringIO()
    installed.append(configure_logging("info", "json", stream=stream))
    try:
        raise ConnectionError(f"cannot connect to {url}")
    except ConnectionError:
        logging.getLogger("redis").exception("connect failed %s", url, extra={"url": url})
    text = stream.getvalue()
    assert SECRET not in text and text.count("app:***@redis.internal") == 3
    assert redact("no url here x@y") == "no url here x@y"
