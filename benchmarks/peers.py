#!/usr/bin/env python3
"""jobqueue against its Python peers, on one private Redis, in one run.

For each library (its own public API, its own worker CLI, 8 jobs at once in one worker process
where the library can) and each round, in a rotated order:

1. enqueue: one producer, one caller, ``--single`` sequential enqueues, timed (jobs/s); then
   ``--bulk`` jobs through the library's bulk API where it has one, timed (else enqueued untimed);
2. process: fill the queue up to ``--jobs`` N (untimed), start the library's worker on it; jobs/s
   between the first and the last no-op handler call, as the handlers themselves report them
   (``adapters/probe.py``); a run ends when all N have started or ``--window`` s after the first;
3. then, with every library's worker running idle at once, idle pickup latency: one job at a
   time to one library at a time (shuffled), each after that library's worker has been idle at
   least ``--min-idle`` s; time from just before the enqueue call to the start of the handler.

Medians over rounds; ratio = peer ÷ jobqueue of the same round, median over rounds (latency:
percentiles of the samples pooled over rounds). Needs the peers installed (``pip install -e
.[bench]`` in a separate venv, see benchmarks/README.md).

    python benchmarks/peers.py [--rounds 3] [--single 500] [--bulk 3000] [--jobs 5000] [--window 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

import adapters  # noqa: E402
from adapters.base import Adapter, ProbeReceiver, WorkerProcess  # noqa: E402
from redis import Redis  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from report import Row, machine, summary, table, verdict  # noqa: E402

WARMUP = 20
"""Untimed enqueues first (connections, imports, script loading); they are processed too."""


class Bench:
    def __init__(self, args: argparse.Namespace, server: RedisServer, probe: ProbeReceiver, logdir: Path) -> None:
        self.args = args
        self.server = server
        self.probe = probe
        self.logdir = logdir
        self._neg = 0

    def url(self, key: str) -> str:
        """Each library gets its own Redis database, flushed between uses."""
        return f"redis://127.0.0.1:{self.server.port}/{adapters.NAMES.index(key) + 1}"

    def flush(self, key: str) -> None:
        with Redis.from_url(self.url(key)) as r:
            r.flushdb()

    def next_latency_id(self) -> int:
        self._neg -= 1
        return self._neg

    def worker(self, key: str, a: Adapter, target: int, tag: str) -> WorkerProcess:
        env = {
            "BENCH_REDIS_URL": a.url,
            "BENCH_PROBE_PORT": str(self.probe.port),
            "BENCH_TARGET": str(target),
            "BENCH_PROBE_EACH": "1" if a.probe_each else "0",
        }
        return WorkerProcess(a.worker_command(), env, self.logdir / f"{key}-{tag}.log").start()

    # ------------------------------------------------------------------ enqueue + process

    async def throughput(self, row: Row, rnd: int) -> None:
        assert row.cls is not None
        cls, key, args = row.cls, row.key, self.args
        self.flush(key)
        a = cls(self.url(key))
        await a.open()
        try:
            for i in range(WARMUP):
                await a.enqueue(i)
            ids = range(WARMUP, WARMUP + args.single)
            t0 = time.perf_counter()
            for i in ids:
                await a.enqueue(i)
            row.single.append(len(ids) / (time.perf_counter() - t0))
            ids = range(ids.stop, ids.stop + args.bulk)
            if cls.bulk_api:
                t0 = time.perf_counter()
                await a.enqueue_bulk(ids)
                row.bulk.append(len(ids) / (time.perf_counter() - t0))
            else:
                await a.fill(ids)
            n = max(args.jobs, ids.stop)
            await a.fill(range(ids.stop, n))
        finally:
            await a.close()
        run = self.probe.start_run(n, cls.probe_each)
        w = self.worker(key, a, n, f"process-r{rnd}")
        try:
            started = time.monotonic()
            while not run.done.is_set():
                if not w.alive():
                    raise RuntimeError(f"worker exited ({w.proc and w.proc.returncode}): {w.log_tail()}")
                if run.first_ns is None and time.monotonic() - started > args.start_timeout:
                    raise RuntimeError(f"no job started within {args.start_timeout:g} s: {w.log_tail()}")
                if run.first_ns is not None and time.monotonic_ns() - run.first_ns > args.window * 1e9:
                    break  # a slow library: its rate over the window, from the jobs started so far
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.done.wait(), 0.05)
            assert run.first_ns is not None
            if run.seen < 2:
                raise RuntimeError(f"only {run.seen} job(s) started within {args.window:g} s")
            row.process.append((run.seen - 1) / ((run.last_ns - run.first_ns) / 1e9))
            row.processed.append(run.seen)
        finally:
            await asyncio.to_thread(w.stop)
            self.flush(key)

    # ------------------------------------------------------------------ pickup latency

    async def latency(self, rows: list[Row]) -> None:
        live: list[tuple[Row, Adapter, WorkerProcess]] = []
        try:
            for row in rows:
                assert row.cls is not None
                self.flush(row.key)
                a = row.cls(self.url(row.key))
                await a.open()
                live.append((row, a, self.worker(row.key, a, 0, "latency")))
            last: dict[str, float] = {}
            for row, a, w in list(live):  # readiness: the first job reaches every worker
                try:
                    await self.pickup(a, w, timeout_s=120)
                    last[row.key] = time.monotonic()
                except Exception as err:
                    row.notes.append(f"latency skipped: worker not ready: {err}")
                    live.remove((row, a, w))
            for _ in range(self.args.latency_samples):
                random.shuffle(live)
                for row, a, w in live:
                    idle = self.args.min_idle + random.uniform(0, 0.5)
                    await asyncio.sleep(max(0.0, last[row.key] + idle - time.monotonic()))
                    try:
                        row.pickup_ms.append(await self.pickup(a, w, timeout_s=self.args.pickup_timeout))
                    except TimeoutError:
                        row.pickup_lost += 1
                    last[row.key] = time.monotonic()
        finally:
            for _, a, _ in live:
                await a.close()
            await asyncio.gather(*(asyncio.to_thread(w.stop) for _, _, w in live))
            for row in rows:
                self.flush(row.key)

    async def pickup(self, a: Adapter, w: WorkerProcess, timeout_s: float) -> float:
        """ms from just before the enqueue call to the handler's start."""
        i = self.next_latency_id()
        fut = self.probe.expect_pickup(i)
        t0 = time.monotonic_ns()
        await a.enqueue(i)
        try:
            t1 = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            if not w.alive():
                raise RuntimeError(f"worker exited: {w.log_tail()}") from None
            raise
        return (t1 - t0) / 1e6


# ---------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    rows: list[Row] = []
    for key in args.libs:
        try:
            rows.append(Row(key, adapters.load(key)))
        except Exception as err:  # a peer that cannot even import gets its row and its reason
            rows.append(Row(key, None, error=f"import failed: {type(err).__name__}: {err}"))
    server = RedisServer("--databases", "32").start()
    probe = ProbeReceiver()
    await probe.start()
    logdir = Path(tempfile.mkdtemp(prefix="jobqueue-peers-"))
    bench = Bench(args, server, probe, logdir)
    try:
        for rnd in range(args.rounds):
            order = [r for r in rows if r.error is None]
            order = order[rnd % len(order) :] + order[: rnd % len(order)]
            for row in order:
                log(f"round {rnd + 1}/{args.rounds}: {row.key} enqueue + process")
                try:
                    await bench.throughput(row, rnd)
                except Exception as err:
                    row.notes.append(f"round {rnd + 1}: {type(err).__name__}: {err}")
                    log(f"  {row.key} failed: {err}")
            log(f"round {rnd + 1}/{args.rounds}: idle pickup latency, all workers")
            await bench.latency([r for r in rows if r.error is None])
    finally:
        probe.close()
        server.cleanup()
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    keep_logs = any(r.notes or r.error for r in rows)
    if not keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)  # worker logs are kept only when something failed
    s = summary(rows)
    settings = {r.key: r.cls.settings for r in rows if r.cls}
    delivery = {r.key: r.cls.delivery for r in rows if r.cls}
    bulk = {r.key: r.cls.bulk_api for r in rows if r.cls}
    return {
        "machine": info,
        "args": vars(args),
        "results": s,
        "settings": settings,
        "delivery": delivery,
        "bulk_api": bulk,
        "logs": str(logdir) if keep_logs else None,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="repetitions, interleaved (default 3)")
    p.add_argument("--single", type=int, default=500, help="timed sequential enqueues per round (default 500)")
    p.add_argument("--bulk", type=int, default=3000, help="jobs per timed bulk enqueue (default 3000)")
    p.add_argument("--jobs", type=int, default=5000, help="N: jobs queued for each processing run (default 5000)")
    p.add_argument(
        "--window", type=float, default=5.0, help="s after the first job start when a processing run ends anyway"
    )
    p.add_argument("--start-timeout", type=float, default=120.0, help="s allowed for a worker to start a first job")
    p.add_argument("--latency-samples", type=int, default=15, help="pickup samples per library per round")
    p.add_argument("--min-idle", type=float, default=1.0, help="s a worker is idle before a pickup sample")
    p.add_argument("--pickup-timeout", type=float, default=10.0, help="s before a pickup sample counts as lost")
    p.add_argument("--libs", default=",".join(adapters.NAMES), help="comma-separated subset of: %(default)s")
    p.add_argument("--json", type=Path, help="also write the full results here")
    args = p.parse_args(argv)
    args.libs = [k.strip() for k in args.libs.split(",") if k.strip()]
    unknown = sorted(set(args.libs) - set(adapters.NAMES))
    if unknown or "jobqueue" not in args.libs:
        p.error(f"--libs must include jobqueue and only these: {', '.join(adapters.NAMES)} (got {unknown})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    n = max(args.jobs, WARMUP + args.single + args.bulk)
    print(
        f"## {out['machine']['date']}: {args.rounds} rounds; processing: N = {n} no-op jobs queued, "
        f"run ends when all started or {args.window:g} s after the first\n"
    )
    for k, v in out["machine"].items():
        print(f"- {k}: {v}")
    print()
    print(table(out["results"], n))
    print()
    print(verdict(out["results"]))
    print(
        "\nper round, processing jobs/s: "
        + "; ".join(
            f"{v['name']} {', '.join(f'{x:,.0f}' for x in v['raw']['process'])}" for v in out["results"].values()
        )
    )
    for key, v in out["results"].items():
        for note in v["notes"]:
            print(f"- note, {key}: {note}")
    if out["logs"]:
        print(f"\nworker logs: {out['logs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
