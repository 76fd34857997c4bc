#!/usr/bin/env python3
"""Generate crds/jobqueue.yaml from the operator's pydantic models (jobqueue_operator.crd).

    python hack/gen_crd.py           # write crds/jobqueue.yaml
    python hack/gen_crd.py --check   # exit 1 when the committed file differs, write nothing

Then run hack/sync_chart_crds.py to copy it into the Helm chart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobqueue_operator.crd import render_crd

TARGET = Path(__file__).resolve().parents[1] / "crds" / "jobqueue.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate crds/jobqueue.yaml from the operator's models.")
    parser.add_argument("--check", action="store_true", help="exit 1 on drift instead of writing")
    args = parser.parse_args(argv)
    text = render_crd()
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != text:
            print(f"{TARGET} is out of date; run: python hack/gen_crd.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        TARGET.write_text(text, encoding="utf-8")
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
