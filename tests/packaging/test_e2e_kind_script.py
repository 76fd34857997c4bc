"""hack/e2e-kind.sh cannot run here (no Docker engine, no cluster); check what can be checked:
it is shellcheck-clean with every optional check on, and it fails loudly, touching nothing,
when a tool it needs is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "e2e-kind.sh"


def test_e2e_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed (Debian: apt-get install -y shellcheck)", pytrace=False)
    result = subprocess.run(
        [shellcheck, "--external-sources", "--enable=all", "--severity=style", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_e2e_script_is_executable_strict_bash() -> None:
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -Eeuo pipefail" in text
    assert "trap cleanup EXIT" in text


def test_e2e_script_stops_at_once_when_a_tool_is_missing(tmp_path: Path) -> None:
    """Only a docker stub on PATH: the script must name the first missing tool and create nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("dirname", "grep", "cat", "base64", "sleep"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    stub = bin_dir / "docker"
    stub.write_text(f'#!/bin/sh\necho "docker $*" >> {calls}\n')
    stub.chmod(0o755)
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, str(SCRIPT)],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "FAILED: kind is not on PATH" in result.stderr
    assert not calls.exists(), "nothing may run before the tool check"
