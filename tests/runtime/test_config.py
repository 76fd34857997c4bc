"""Config loading: the seed's file, defaults, environment overrides, and every validation error."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jobqueue.config import Config, build_config, env_overrides, load, redact_url
from jobqueue.durations import format_duration, parse_duration
from jobqueue.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SEED_EXAMPLE = """\
redis:
  addr: "localhost:6379"
  pool_size_multiplier: 10
  min_idle_conns: 5
  dial_timeout: 5s
  read_timeout: 3s
  write_timeout: 3s
  max_retries: 3
worker:
  count: 16
  heartbeat_ttl: 30s
  max_retries: 3
  backoff: {base: 500ms, max: 10s}
  priorities: ["high", "low"]
  queues: {high: "jobqueue:high_priority", low: "jobqueue:low_priority"}
  processing_list_pattern: "jobqueue:worker:%s:processing"
  heartbeat_key_pattern: "jobqueue:processing:worker:%s"
  completed_list: "jobqueue:completed"
  dead_letter_list: "jobqueue:dead_letter"
  brpoplpush_timeout: 1s
producer:
  scan_dir: "./data"
  include_globs: ["**/*"]
  exclude_globs: ["**/*.tmp", "**/.DS_Store"]
  default_priority: "low"
  high_priority_exts: [".pdf", ".docx", ".xlsx", ".zip"]
  rate_limit_per_sec: 100
  rate_limit_key: "jobqueue:rate_limit:producer"
circuit_breaker: {failure_threshold: 0.5, window: 1m, cooldown_period: 30s, min_samples: 20}
observability:
  metrics_port: 9090
  log_level: "info"
  queue_sample_interval: 2s
  tracing: {enabled: false, endpoint: ""}
"""


def test_the_seed_example_loads_unchanged_and_reports_ignored_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_EXAMPLE)
    loaded = load(path, environ={})
    assert loaded.ignored_keys == [
        "producer.rate_limit_key",
        "redis.min_idle_conns",
        "worker.brpoplpush_timeout",
        "worker.completed_list",
        "worker.dead_letter_list",
        "worker.heartbeat_key_pattern",
        "worker.processing_list_pattern",
        "worker.queues",
    ]
    assert loaded.config == Config()  # the seed's values are our defaults


def test_the_shipped_example_is_the_seed_file() -> None:
    shipped = (ROOT / "config" / "config.example.yaml").read_text()
    body = "\n".join(line for line in shipped.splitlines() if not line.startswith("#")) + "\n"
    assert body == SEED_EXAMPLE


def test_defaults_are_the_seeds() -> None:
    c = Config()
    assert (c.worker.count, c.worker.heartbeat_ttl, c.worker.max_retries) == (16, timedelta(seconds=30), 3)
    assert (c.worker.backoff.base, c.worker.backoff.max) == (timedelta(milliseconds=500), timedelta(seconds=10))
    assert c.worker.priorities == ["high", "low"]
    assert c.producer.scan_dir == "./data" and c.producer.include_globs == ["**/*"]
    assert c.producer.exclude_globs == ["**/*.tmp", "**/.DS_Store"]
    assert c.producer.default_priority == "low" and c.producer.rate_limit_per_sec == 100
    assert c.producer.high_priority_exts == [".pdf", ".docx", ".xlsx", ".zip"]
    cb = c.circuit_breaker
    assert (cb.failure_threshold, cb.window, cb.cooldown_period, cb.min_samples) == (
        0.5,
        timedelta(minutes=1),
        timedelta(seconds=30),
        20,
    )
    assert (c.observability.metrics_port, c.observability.log_level) == (9090, "info")
    assert c.worker.shutdown_timeout == timedelta(seconds=25)


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    loaded = load(tmp_path / "nope.yaml", environ={})
    assert loaded.source is None and loaded.config == Config()


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("worker: {count: 4}\nredis: {addr: 'a:1'}\n")
    env = {
        "WORKER_COUNT": "32",
        "REDIS_ADDR": "redis.example:6380",
        "CIRCUIT_BREAKER_MIN_SAMPLES": "7",
        "WORKER_BACKOFF_BASE": "250ms",
        "WORKER_PRIORITIES": '["urgent", "bulk"]',
        "PRODUCER_DEFAULT_PRIORITY": "bulk",
        "REDIS_URL": "rediss://user:secret@r.example:6390/2",
        "OBSERVABILITY_TRACING_ENABLED": "true",
        "UNRELATED_THING": "x",
    }
    c = load(path, environ=env).config
    assert c.worker.count == 32
    assert c.redis.addr == "redis.example:6380"
    assert c.circuit_breaker.min_samples == 7
    assert c.worker.backoff.base == timedelta(milliseconds=250)
    assert c.worker.priorities == ["urgent", "bulk"]
    assert c.redis.url == "rediss://user:secret@r.example:6390/2"
    assert c.observability.tracing.enabled is True


def test_env_override_names_are_upper_snake_case_paths() -> None:
    assert env_overrides({"WORKER_COUNT": "3", "QUEUE_NAME": "emails"}) == {
        "worker": {"count": "3"},
        "queue_name": "emails",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"worker": {"count": 0}}, "worker.count: Input should be greater than or equal to 1"),
        ({"worker": {"count": "many"}}, "worker.count: Input should be a valid integer"),
        ({"worker": {"heartbeat_ttl": "5 parsecs"}}, "worker.heartbeat_ttl: invalid duration"),
        ({"worker": {"backoff": {"base": "10s", "max": "1s"}}}, "worker.backoff: need 0 <= base <= max"),
        ({"worker": {"priorities": ["a", "a"]}}, "worker.priorities: priority names must be unique"),
        ({"worker": {"handler": "nocolon"}}, "worker.handler: must be an import path"),
        ({"redis": {"addr": "nohostport"}}, "redis.addr: must be host:port"),
        ({"redis": {"url": "http://x"}}, "redis.url: must start with redis://, rediss:// or unix://"),
        ({"producer": {"default_priority": "mid"}}, "producer.default_priority 'mid' is not one of"),
        ({"circuit_breaker": {"failure_threshold": 2}}, "circuit_breaker.failure_threshold: Input should be less"),
        ({"observability": {"log_level": "loud"}}, "observability.log_level: Input should be"),
        ({"observability": {"metrics_port": 70000}}, "observability.metrics_port: Input should be less"),
        ({"worker": {"cnt": 3}}, "worker.cnt: unknown key"),
        ({"bogus": {}}, "bogus: unknown key"),
    ],
)
def test_invalid_values_name_the_field_and_the_reason(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"worker": {"count": -1, "max_retries": -1}, "redis": {"db": -2}})
    assert len(info.value.problems) == 3


def test_yaml_that_is_not_a_mapping_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(bad, environ={})
    bad.write_text("worker: {count: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load(bad, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1m", 60), ("1m30s", 90), ("1h2m3.5s", 3723.5), ("250us", 0.00025), ("2", 2), ("0", 0)],
)
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


def test_durations_dump_back_in_go_form() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0.5, 30, 90, 3600)] == ["500ms", "30s", "1m30s", "1h"]
    assert Config().model_dump(mode="json")["worker"]["heartbeat_ttl"] == "30s"


def test_secrets_are_redacted_from_dumps() -> None:
    c = build_config({"redis": {"url": "redis://u:hunter2@h:6379/0", "password": "hunter3"}})
    text = str(c.redacted())
    assert "hunter2" not in text and "hunter3" not in text
    assert redact_url("redis://:pw@h:1") == "redis://:***@h:1"
    assert "hunter3" not in repr(c)
    assert "hunter2" not in repr(c) and "hunter2" not in str(c.redis)


def test_cli_reports_an_invalid_config_with_exit_status_2_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("worker: {count: 0, priorities: []}\nnope: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={bad}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines()]
    assert any(line.startswith("worker.count:") for line in lines)
    assert any(line.startswith("worker.priorities:") for line in lines)
    assert "nope: unknown key" in lines
