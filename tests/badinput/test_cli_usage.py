"""Bad command lines and bad config files: a usage error, exit status 2, no traceback.

Run as real subprocesses of the installed console entry point, as an operator would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import RedisServer


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env_clean = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env_clean,
    )


@pytest.fixture
def admin_config(tmp_path: Path, redis_server: RedisServer) -> Path:
    path = tmp_path / "admin.yaml"
    path.write_text(f'redis: {{url: "{redis_server.url}"}}\nobservability: {{metrics_port: 0}}\n')
    return path


USAGE: list[tuple[str, list[str], str]] = [
    ("no role", [], "--role is required"),
    ("unknown role", ["--role=nope"], "invalid choice: 'nope'"),
    ("unknown flag", ["--role=worker", "--bogus"], "unrecognized arguments: --bogus"),
    ("flag without its value", ["--role"], "expected one argument"),
    ("unknown admin command", ["--role=admin", "--admin-cmd=drop-all"], "invalid choice: 'drop-all'"),
    ("--n not a number", ["--role=admin", "--admin-cmd=peek", "--n=many"], "invalid int value: 'many'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "args", "message"), USAGE, ids=[u[0] for u in USAGE])
def test_bad_usage_exits_2_with_a_usage_message(tmp_path: Path, case: str, args: list[str], message: str) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r
    assert message in r.stderr
    assert "usage: job-queue-system" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


ADMIN: list[tuple[str, list[str], str]] = [
    ("admin without a command", ["--role=admin"], "needs --admin-cmd"),
    ("purge without --yes", ["--role=admin", "--admin-cmd=purge-dlq"], "add --yes to confirm"),
    ("peek without --queue", ["--role=admin", "--admin-cmd=peek"], "peek needs --queue"),
    ("peek of an unknown queue", ["--role=admin", "--admin-cmd=peek", "--queue=nope"], "unknown queue 'nope'"),
    ("peek of zero jobs", ["--role=admin", "--admin-cmd=peek", "--queue=high", "--n=0"], "--n must be at least 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "args", "message"), ADMIN, ids=[a[0] for a in ADMIN])
def test_bad_admin_usage_exits_2_and_changes_nothing(
    tmp_path: Path, admin_config: Path, case: str, args: list[str], message: str
) -> None:
    r = cli(*args, f"--config={admin_config}", cwd=tmp_path)
    assert r.returncode == 2, r
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


BAD_CONFIGS: list[tuple[str, str, list[str]]] = [
    ("unknown key", "worker:\n  cuont: 3\n", ["worker.cuont: unknown key"]),
    ("bad value", "worker:\n  count: -1\n", ["worker.count:"]),
    ("bad duration", "worker:\n  heartbeat_ttl: soon\n", ["worker.heartbeat_ttl: invalid duration 'soon'"]),
    (
        "two problems",
        "redis: {addr: nohost}\nproducer: {rate_limit_per_sec: x}\n",
        ["redis.addr: must be host:port", "producer.rate_limit_per_sec:"],
    ),
    ("not YAML", "worker: [unclosed\n", ["(file): not valid YAML at line"]),
    ("not a mapping", "- just\n- a list\n", ["(top level): must be a mapping of sections"]),
    ("huge duration", "redis: {dial_timeout: 99999999999999h}\n", ["redis.dial_timeout: duration"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "text", "lines"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_an_invalid_config_exits_2_with_one_line_per_problem(
    tmp_path: Path, case: str, text: str, lines: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = cli("--role=worker", f"--config={path}", cwd=tmp_path)
    assert r.returncode == 2, r
    assert f"invalid configuration in {path}" in r.stderr
    problems = [line.strip() for line in r.stderr.splitlines()[1:] if line.strip()]
    assert len(problems) == len(lines), r.stderr
    for want, got in zip(lines, problems, strict=True):
        assert got.startswith(want), (want, got)
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_an_invalid_environment_override_exits_2_naming_the_field(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={tmp_path / 'missing.yaml'}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "WORKER_COUNT": "lots", "REDIS_URL": "http://wrong"},
    )
    assert r.returncode == 2, r
    assert "worker.count:" in r.stderr and "redis.url: must start with redis://" in r.stderr
    assert "Traceback" not in r.stderr
