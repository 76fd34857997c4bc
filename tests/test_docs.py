"""The README's configuration reference is generated from the model; fail when it drifts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_matches_the_model() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_config_docs.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    assert out in readme, "README config reference is stale: run `python hack/gen_config_docs.py` and paste it"


def test_readme_has_exactly_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
