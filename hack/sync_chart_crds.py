#!/usr/bin/env python3
"""Copy the CRDs from crds/ (the single source) into the Helm chart's crds/ directory.

    python hack/sync_chart_crds.py           # write charts/jobqueue/crds/ from crds/
    python hack/sync_chart_crds.py --check   # exit 1 and list the drift, write nothing

Helm installs charts/jobqueue/crds/*.yaml verbatim before the templates, so the copies must be
byte-identical. tests/packaging/test_chart_crds.py runs the check; run this script after
regenerating crds/ (hack/ has the generator of crds/ from the operator's models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "crds"
TARGET = ROOT / "charts" / "jobqueue" / "crds"


def expected(source: Path = SOURCE) -> dict[str, bytes]:
    """File name -> content the chart's crds/ must hold."""
    return {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def drift(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Human-readable differences between the two directories; empty when in sync."""
    want = expected(source)
    have = {p.name: p.read_bytes() for p in sorted(target.glob("*.yaml"))} if target.is_dir() else {}
    problems = [f"missing in {_show(target)}: {n}" for n in sorted(want.keys() - have.keys())]
    problems += [f"not in {_show(source)}: {n}" for n in sorted(have.keys() - want.keys())]
    problems += [f"differs: {n}" for n in sorted(want.keys() & have.keys()) if want[n] != have[n]]
    return problems


def sync(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Make target a copy of source's *.yaml; returns what changed."""
    changed = drift(source, target)
    target.mkdir(parents=True, exist_ok=True)
    want = expected(source)
    for stale in target.glob("*.yaml"):
        if stale.name not in want:
            stale.unlink()
    for name, data in want.items():
        dest = target / name
        if not dest.exists() or dest.read_bytes() != data:
            dest.write_bytes(data)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report drift and exit 1 instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python hack/sync_chart_crds.py", file=sys.stderr)
        return 1 if problems else 0
    for line in sync():
        print(f"synced ({line})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
