"""Static checks of the Dockerfile: the promises the image makes that no build here can show.

Multi-stage, compilers only in the build stage, a numeric non-root user, the entrypoint and
port of the seed, a HEALTHCHECK on /healthz, config from /config/config.yaml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else str(len(stages))
            current = stages.setdefault(name, [])
        current.append((op, rest.strip()))
    return stages


def test_dockerfile_builds_in_one_stage_and_runs_in_another_without_compilers() -> None:
    stages = _stages()
    assert list(stages) == ["build", "final"]
    build_runs = " ".join(rest for op, rest in stages["build"] if op == "RUN")
    assert "build-essential" in build_runs
    final = " ".join(rest for op, rest in stages["final"])
    assert "build-essential" not in final and "gcc" not in final
    assert "--no-index" in final, "the final stage installs only the wheels built in the build stage"
    assert "jobqueue[operator]" in final, "one image serves every role, the operator included"


def test_final_image_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for op, rest in _stages()["final"] if op == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000


def test_entrypoint_port_healthcheck_and_config_path() -> None:
    final = _stages()["final"]
    (entry,) = [json.loads(rest) for op, rest in final if op == "ENTRYPOINT"]
    assert entry == ["job-queue-system", "--config=/config/config.yaml"]
    assert ("EXPOSE", "9090") in final
    (health,) = [rest for op, rest in final if op == "HEALTHCHECK"]
    assert "/healthz" in health and "CMD" in health
    (cmd,) = [json.loads(rest) for op, rest in final if op == "CMD"]
    assert cmd == ["--role=all"]


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    lines = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "**"
    admitted = {ln[1:].removesuffix("/**") for ln in lines if ln.startswith("!")}
    copied = set()
    for op, rest in _stages()["build"]:
        if op == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert copied == admitted
