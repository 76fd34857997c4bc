#!/usr/bin/env python3
"""Long chaos runs with the same code as the CI-bounded test (tests/chaos/test_chaos.py).

    python hack/chaos.py                 # the issue's numbers: 100,000 jobs, 10s lease, 5s reaper
    python hack/chaos.py --ci            # exactly what CI runs (5,000 jobs, 2s lease, 1s reaper)
    python hack/chaos.py --jobs 20000 --cycles 2 --seed 7

Starts its own redis-server (AOF, appendfsync always) on a free loopback port, a fault proxy,
and worker processes; prints the verdict table; exits 0 when every check passes, 1 otherwise.
Worker logs stay in --workdir (default: a new temporary directory) for inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from chaos_harness import Chaos, ChaosParams  # noqa: E402
from chaos_verdict import judge  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ci", action="store_true", help="the bounded CI parameters instead of the long-run ones")
    p.add_argument("--jobs", type=int, help="jobs to enqueue (long run: 100000)")
    p.add_argument("--workers", type=int, help="worker processes (long run: 6)")
    p.add_argument("--concurrency", type=int, help="worker.count of each process (long run: 16)")
    p.add_argument("--ttl", type=float, help="worker.heartbeat_ttl in seconds (long run: 10)")
    p.add_argument("--reaper", type=float, help="worker.reaper_interval in seconds (long run: 5)")
    p.add_argument("--phase", type=float, help="seconds per fault phase (long run: 60)")
    p.add_argument("--cycles", type=int, help="times the six fault phases are repeated (default 1)")
    p.add_argument("--kill-every", type=float, help="seconds between SIGKILLs in the kill phase (long run: 5)")
    p.add_argument("--seed", type=int, help="random seed (default 1)")
    p.add_argument("--workdir", type=Path, help="where worker logs and config go (default: a temp dir)")
    return p.parse_args(argv)


def params_from(args: argparse.Namespace) -> ChaosParams:
    names = {
        "jobs": "jobs",
        "workers": "workers",
        "concurrency": "concurrency",
        "ttl": "heartbeat_ttl_s",
        "reaper": "reaper_interval_s",
        "phase": "phase_s",
        "cycles": "cycles",
        "kill_every": "kill_every_s",
        "seed": "seed",
    }
    over = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}
    return ChaosParams.ci(**over) if args.ci else ChaosParams.long(**over)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = params_from(args)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jobqueue-chaos-"))
    run = asyncio.run(Chaos(params, workdir, log=lambda line: print(line, flush=True)).run())
    verdict = judge(run)
    print(verdict.table())
    (workdir / "verdict.txt").write_text(verdict.table() + "\n")
    print(f"worker logs and verdict.txt in {workdir}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
