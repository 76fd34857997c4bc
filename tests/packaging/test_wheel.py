"""The Docker image's install steps, reproduced without Docker.

The Dockerfile builds the project's wheel from a context of pyproject.toml, README.md, runtime/
and operator/ (.dockerignore keeps everything else out), installs it into a fresh venv and runs
``job-queue-system --config=/config/config.yaml --role=...`` configured from the environment.
These tests do the same in a temporary directory: the wheel must carry the Lua scripts, the
console scripts must start, and a short all-in-one run must process real jobs in a real Redis.

The fresh venv gets the wheel itself (``--no-deps``); its dependencies are borrowed from the
development venv through a .pth file, after the wheel's own site-packages, and the test checks
that they satisfy every requirement the wheel declares. That keeps the test offline and fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from redis import Redis as SyncRedis

from jobqueue.keys import QueueKeys

ROOT = Path(__file__).resolve().parents[2]
#: What .dockerignore lets into the build context.
CONTEXT = ("pyproject.toml", "README.md", "runtime", "operator")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def _run(args: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    # Our own directory: pytest's shared basetemp may be pruned by concurrent runs on this machine.
    with tempfile.TemporaryDirectory(prefix="jobqueue-image-") as tmp:
        yield _install(Path(tmp))


def _install(work: Path) -> Installed:
    ctx = work / "context"
    ctx.mkdir()
    for name in CONTEXT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, ctx / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, ctx / name)
    # Dockerfile: pip wheel --wheel-dir /wheels ".[operator]" (isolated build, as in the image).
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", work / "wheels", "."], cwd=ctx)
    (wheel,) = (work / "wheels").glob("jobqueue-*.whl")
    # Dockerfile: python -m venv /opt/jobqueue && pip install ... jobqueue[operator]
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel])
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel, venv)


def test_wheel_contains_the_lua_scripts_and_the_operator_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
    shipped = {p.name for p in (ROOT / "runtime" / "jobqueue" / "lua").glob("*.lua")}
    assert shipped, "no Lua scripts in the source tree"
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("jobqueue/lua/")} == shipped
    assert "jobqueue_operator/__init__.py" in names
    assert "jobqueue/py.typed" in names


def test_wheel_requirements_are_satisfied_in_the_fresh_venv(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        meta_name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode())
    script = (
        "import sys, importlib.metadata as m\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    r = Requirement(line)\n"
        "    if r.marker is not None and not r.marker.evaluate({'extra': 'operator'}):\n"
        "        continue\n"
        "    try:\n"
        "        v = m.version(r.name)\n"
        "    except m.PackageNotFoundError:\n"
        "        bad.append(f'{r}: missing'); continue\n"
        "    if not r.specifier.contains(v, prereleases=True):\n"
        "        bad.append(f'{r}: have {v}')\n"
        "print('\\n'.join(bad))\n"
    )
    wanted = [r for r in meta.get_all("Requires-Dist") or [] if _for_image(r)]
    assert any(Requirement(r).name == "kopf" for r in wanted), "the image installs jobqueue[operator]"
    out = _run([installed.python, "-c", script], input="\n".join(wanted)).stdout.strip()
    assert out == "", f"unsatisfied requirements:\n{out}"


def _for_image(req: str) -> bool:
    """Requirements of ``jobqueue[operator]``: the base ones and the operator extra."""
    marker = Requirement(req).marker
    return marker is None or marker.evaluate({"extra": "operator"})


def test_installed_package_comes_from_the_wheel_not_the_source_tree(installed: Installed) -> None:
    out = _run(
        [installed.python, "-c", "import jobqueue, jobqueue_operator; print(jobqueue.__file__)"],
        cwd=installed.venv,
        env=_clean_env(),
    ).stdout.strip()
    assert Path(out).is_relative_to(installed.venv), out
    lua = Path(out).parent / "lua"
    assert (lua / "claim.lua").is_file()


def test_console_scripts_print_the_version(installed: Installed) -> None:
    for script in ("job-queue-system", "jobqueue"):
        out = _run([installed.bin / script, "--version"], env=_clean_env()).stdout
        assert out.startswith("job-queue-system 0."), out


def _clean_env(**extra: str) -> dict[str, str]:
    """The container's environment: no PYTHONPATH into the source tree, only the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "REDIS_", "WORKER_", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status, resp.read().decode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_all_in_one_role_processes_a_short_job_configured_from_the_environment(
    installed: Installed, redis_server: object, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"file{i}.txt").write_bytes(b"x" * 100)
    (data / "report.pdf").write_bytes(b"%PDF" * 10)
    port = _free_port()
    queue = "pkgtest"
    url = redis_server.url  # type: ignore[attr-defined]
    redis = SyncRedis.from_url(url)
    redis.flushall()
    env = _clean_env(
        # As with the image: --env-file values, and a /config mount that is absent.
        REDIS_URL=url,
        QUEUE_NAME=queue,
        WORKER_COUNT="4",
        PRODUCER_SCAN_DIR=str(data),
        OBSERVABILITY_METRICS_PORT=str(port),
        OBSERVABILITY_METRICS_HOST="127.0.0.1",
        OBSERVABILITY_LOG_FORMAT="json",
    )
    proc = subprocess.Popen(
        [installed.bin / "job-queue-system", f"--config={tmp_path / 'config' / 'config.yaml'}", "--role=all"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stats = QueueKeys(queue, ("high", "low")).stats
    try:
        deadline = time.monotonic() + 20
        completed = 0
        health = metrics = ""
        while time.monotonic() < deadline and proc.poll() is None:
            completed = int(redis.hget(stats, "completed") or 0)
            if completed == 7 and not health:
                health = _get(f"http://127.0.0.1:{port}/healthz")[1]
                metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
                break
            time.sleep(0.05)  # polling interval, not a wait for a condition
        assert completed == 7, f"completed={completed}, rc={proc.poll()}"
        assert health
        assert "jobs_completed_total" in metrics
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        redis.close()
