"""Passwords never appear in logs, admin output, /metrics, /healthz, /readyz or error messages.

Each scenario runs the real CLI against a TLS + ACL redis-server, captures everything the
process printed or served, and greps it for the password (and its URL-encoded form).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis import Redis
from tls_redis import TLSRedis

from jobqueue.config import build_config
from jobqueue.errors import ConfigError
from jobqueue.keys import QueueKeys

SECRET = f"Sup3r-S3cret-{secrets.token_hex(8)}"
WRONG = f"Wr0ng-S3cret-{secrets.token_hex(8)}"
QUEUE = "leaks"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    s = TLSRedis(tmp_path_factory.mktemp("tls-redis-leaks"), password=SECRET).start()
    yield s
    s.stop()


def assert_no_secret(text: str, *secrets_: str) -> None:
    for s in secrets_:
        assert s not in text, f"secret leaked: ...{text[max(text.find(s) - 200, 0) : text.find(s) + 50]}..."


def setup(
    server: TLSRedis, tmp_path: Path, form: str, password: str, **observability: Any
) -> tuple[Path, dict[str, str]]:
    """Config file + environment giving the password in one of three ways."""
    redis: dict[str, Any] = {"tls": {"ca_file": str(server.ca.cert)}, "dial_timeout": "2s", "max_retries": 1}
    env = {"PATH": "/usr/bin:/bin"}
    if form == "url":
        redis["url"] = f"rediss://{server.user}:{password}@127.0.0.1:{server.port}/0"
    elif form == "yaml":
        redis.update(addr=server.addr, username=server.user, password=password)
        redis["tls"]["enabled"] = True
    else:
        redis.update(addr=server.addr)
        redis["tls"]["enabled"] = True
        env.update(REDIS_USERNAME=server.user, REDIS_PASSWORD=password)
    cfg = {
        "queue_name": QUEUE,
        "redis": redis,
        "worker": {"count": 2, "heartbeat_ttl": "2s", "handler": "jobqueue.handlers:process_file"},
        "observability": {"metrics_port": 0, "log_level": "debug", "log_format": "json", **observability},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, env


def direct(server: TLSRedis) -> Redis:
    return Redis(
        host="127.0.0.1",
        port=server.port,
        username=server.user,
        password=server.password,
        ssl=True,
        ssl_ca_certs=str(server.ca.cert),
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


FORMS = ["url", "yaml", "env"]
SHORT = {"--admin-cmd=stats", "--admin-cmd=config", "--admin-cmd=workers"}


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_a_running_worker_never_shows_the_password(server: TLSRedis, tmp_path: Path, form: str) -> None:
    port = free_port()
    path, env = setup(server, tmp_path, form, SECRET, metrics_port=port, metrics_host="127.0.0.1")
    out = tmp_path / "worker.log"
    keys = QueueKeys(QUEUE, ("high", "low"))
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobqueue.cli", "--role=all", f"--config={path}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env, "PRODUCER_SCAN_DIR": str(tmp_path / "data")},
            cwd=tmp_path,
        )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.txt").write_text("x")
    (tmp_path / "data" / "will-fail.txt").write_text("x")
    served = []
    try:
        deadline = time.monotonic() + 30
        with direct(server) as r:
            while True:
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "worker not ready in time:\n" + out.read_text()
                status, _ = get(f"http://127.0.0.1:{port}/readyz") if _listening(port) else (0, "")
                done = int(r.hget(keys.stats, "completed") or 0) + int(r.zcard(keys.dead))
                if status == 200 and done >= 1 and r.hget(keys.stats, "retried"):
                    break
                time.sleep(0.05)
        for endpoint in ("/metrics", "/healthz", "/readyz"):
            served.append(get(f"http://127.0.0.1:{port}{endpoint}")[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    text = out.read_text()
    assert "connected to redis" in text and "jobs_completed" in served[0]
    assert_no_secret(text + "".join(served), SECRET)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_a_wrong_password_is_reported_without_the_password(server: TLSRedis, tmp_path: Path, form: str) -> None:
    path, env = setup(server, tmp_path, form, WRONG)
    r = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={path}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "refused the credentials" in r.stderr, r
    assert_no_secret(r.stdout + r.stderr, WRONG, SECRET)


ADMIN = [
    ["--admin-cmd=stats"],
    ["--admin-cmd=peek", "--queue=low"],
    ["--admin-cmd=peek", "--queue=dlq"],
    ["--admin-cmd=peek", "--queue=completed"],
    ["--admin-cmd=workers"],
    ["--admin-cmd=config"],
    ["--admin-cmd=enqueue", "--payload", '{"n": 1}'],
    ["--admin-cmd=inspect", "--id=no-such-job"],
    ["--admin-cmd=purge-dlq"],
]


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_admin_output_never_shows_the_password(server: TLSRedis, tmp_path: Path, form: str) -> None:
    path, env = setup(server, tmp_path, form, SECRET)
    outputs: list[str] = []
    stdouts: list[str] = []
    # Every command with the password in the URL (the form most likely to be echoed); a few otherwise.
    ran = ADMIN if form == "url" else [a for a in ADMIN if a[0] in SHORT]
    for args in ran:
        r = subprocess.run(
            [sys.executable, "-m", "jobqueue.cli", "--role=admin", f"--config={path}", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode in (0, 1, 2), r
        outputs.append(r.stdout + "\n" + r.stderr)
        stdouts.append(r.stdout)
    config_out = next(o for a, o in zip(ran, outputs, strict=True) if a == ["--admin-cmd=config"])
    assert server.user in config_out or form == "env"  # the command did print the redis section
    assert json.loads(stdouts[0])["queue"] == QUEUE, outputs[0]  # stats connected with the password
    assert_no_secret("\n".join(outputs), SECRET)


@pytest.mark.parametrize(
    "data",
    [
        {"redis": {"url": f"http://user:{SECRET}@host:6379"}},
        {"redis": {"url": f"redis://user:{SECRET}@host:6379", "addr": "no-port"}},
        {"redis": {"password": [SECRET]}},
        {"redis": {"password": SECRET, "db": -1}},
        {"redis": {"url": f"rediss://user:{SECRET}@host:6379", "tls": {"ca_file": 5}}},
    ],
)
def test_config_errors_never_echo_the_password(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(data, environ={})
    assert_no_secret(str(info.value) + "\n".join(info.value.problems), SECRET)


def test_config_errors_from_the_environment_never_echo_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, environ={"REDIS_URL": f"tcp://u:{SECRET}@h:1", "REDIS_PASSWORD": SECRET, "REDIS_DB": "x"})
    assert_no_secret(str(info.value), SECRET)


def test_a_yaml_syntax_error_on_the_password_line_does_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f'redis:\n  password: "{SECRET}\n  addr: [\n')
    r = subprocess.run(
        [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={path}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2, r
    assert_no_secret(r.stdout + r.stderr, SECRET)


@pytest.mark.parametrize("url", [f"redis://user:{SECRET}@h:1/0", f"rediss://:{SECRET}@h:1", f"redis://{SECRET}@h:1"])
def test_the_redacted_config_masks_every_form_of_the_password(url: str) -> None:
    cfg = build_config({"redis": {"url": url, "password": SECRET}}, environ={})
    assert_no_secret(json.dumps(cfg.redacted()), SECRET)
    assert_no_secret(repr(cfg.redis.password), SECRET)


def test_no_environment_variable_of_the_test_run_carries_the_secret() -> None:
    # Guard for the tests above: the secret reaches processes only where a test puts it.
    assert_no_secret(json.dumps(dict(os.environ)), SECRET)
