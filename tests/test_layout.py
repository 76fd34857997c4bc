"""The source layout that keeps `import operator` the standard library's, and the package data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jobqueue
from jobqueue.scripts import load_script, script_names

ROOT = Path(__file__).resolve().parents[1]


def test_no_init_py_directly_in_operator_runtime_or_anywhere_under_tests() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "runtime" / "__init__.py").exists()
    assert list((ROOT / "tests").rglob("__init__.py")) == []


def test_the_standard_library_operator_module_is_not_shadowed() -> None:
    code = "import operator, jobqueue, jobqueue_operator; print(operator.__file__); print(operator.itemgetter)"
    for cwd in (ROOT, ROOT / "operator", ROOT / "runtime"):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
        first = out.stdout.splitlines()[0]
        assert "site-packages" not in first or "jobqueue" not in first
        assert not first.startswith(str(ROOT / "operator")), first


def test_the_lua_scripts_ship_as_package_data() -> None:
    names = script_names()
    assert {"enqueue", "claim", "extend_lease", "ack", "retry", "bury", "promote", "reap", "release"} <= set(names)
    assert all(load_script(n).source for n in names)
    assert Path(jobqueue.__file__).parent.joinpath("lua", "claim.lua").is_file()


def test_import_contracts_hold() -> None:
    """roles -> broker -> scripts/keys/clock; the operator never imports the roles (import-linter)."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
