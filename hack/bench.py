#!/usr/bin/env python3
"""jobqueue's own benchmark: throughput and pickup latency on a private Redis, with the machine's
baseline (redis-benchmark LPUSH, one client) measured in the same run so numbers compare across
noisy machines as ratios.

    python hack/bench.py [--jobs 20000] [--concurrency 8] [--latency-samples 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from redis_server import RedisServer

import jobqueue
from jobqueue.handlers import HandlerRegistry


def baseline_lpush(server: RedisServer, n: int = 100_000) -> float:
    """ops/s of `redis-benchmark -t lpush -n N -c 1` against the same server."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return float("nan")
    out = subprocess.run(
        [exe, "-p", str(server.port), "-t", "lpush", "-n", str(n), "-c", "1", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"LPUSH[^:]*:\s*([\d.]+)\s+requests per second", out.replace("\r", "\n"))
    return float(m.group(1)) if m else float("nan")


def config(url: str, concurrency: int, queue: str, prefetch: int = 0, handoff: bool = True) -> jobqueue.Config:
    return jobqueue.build_config(
        {
            "queue_name": queue,
            "redis": {"url": url},
            "worker": {
                "count": concurrency,
                "prefetch": prefetch,
                "handoff": handoff,
                "handler": "jobqueue.handlers:noop",
                "completed_keep": 0,
            },
            "circuit_breaker": {"enabled": False},
            "observability": {"metrics_port": 0},
        }
    )


async def bench_enqueue_single(cfg: jobqueue.Config, n: int) -> float:
    async with jobqueue.Queue(cfg) as q:
        t0 = time.perf_counter()
        for i in range(n):
            await q.enqueue("", i)
        return n / (time.perf_counter() - t0)


async def bench_enqueue_concurrent(cfg: jobqueue.Config, n: int, tasks: int = 16) -> float:
    async with jobqueue.Queue(cfg) as q:

        async def one(k: int) -> None:
            for i in range(k, n, tasks):
                await q.enqueue("", i)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(tasks)))
        return n / (time.perf_counter() - t0)


async def bench_enqueue_bulk(cfg: jobqueue.Config, n: int) -> float:
    async with jobqueue.Queue(cfg) as q:
        specs = [jobqueue.JobSpec(payload=i) for i in range(n)]
        t0 = time.perf_counter()
        await q.enqueue_many(specs)
        return n / (time.perf_counter() - t0)


async def bench_process(cfg: jobqueue.Config, n: int) -> float:
    async with jobqueue.Queue(cfg) as q:
        await q.enqueue_many([jobqueue.JobSpec(payload=i) for i in range(n)])
        worker = jobqueue.Worker(cfg)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        while (await q.stats()).counters.get("completed", 0) < n:  # noqa: ASYNC110 - polling Redis itself
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        stop.set()
        await task
        return n / elapsed


async def bench_pickup(cfg: jobqueue.Config, samples: int) -> tuple[float, float]:
    """Enqueue one job at a time into an idle worker; time from enqueue call to handler start."""
    registry = HandlerRegistry()
    started: asyncio.Queue[float] = asyncio.Queue()

    async def mark(job: jobqueue.Job) -> None:
        started.put_nowait(time.perf_counter())

    registry.register("mark", mark)
    worker = jobqueue.Worker(cfg, registry=registry)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    lat: list[float] = []
    async with jobqueue.Queue(cfg) as q:
        for i in range(samples + 10):
            await asyncio.sleep(0.005)  # let the worker go idle (blocked on its handoff and wake lists)
            t0 = time.perf_counter()
            await q.enqueue("mark", i)
            t1 = await asyncio.wait_for(started.get(), 5)
            if i >= 10:  # warm-up
                lat.append((t1 - t0) * 1000)
    stop.set()
    await task
    lat.sort()
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer().start()
    try:
        results: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            print(f"  {name}: {value:,.2f}", file=sys.stderr, flush=True)
            results.setdefault(name, []).append(value)

        for r in range(args.repeat):
            add("redis-benchmark LPUSH -c 1 (ops/s)", baseline_lpush(server))
            add("enqueue single, sequential (jobs/s)", await bench_enqueue_single(config(server.url, 8, f"s{r}"), 5000))
            add(
                "enqueue single, 16 concurrent callers (jobs/s)",
                await bench_enqueue_concurrent(config(server.url, 8, f"c{r}"), 10000),
            )
            add("enqueue bulk, enqueue_many (jobs/s)", await bench_enqueue_bulk(config(server.url, 8, f"b{r}"), 50000))
            add(
                f"process {args.jobs} no-op jobs, 1 worker, concurrency {args.concurrency} (jobs/s)",
                await bench_process(config(server.url, args.concurrency, f"p{r}"), args.jobs),
            )
            pf = 4 * args.concurrency
            add(
                f"process {args.jobs} no-op jobs, concurrency {args.concurrency}, prefetch {pf} (jobs/s)",
                await bench_process(config(server.url, args.concurrency, f"pf{r}", pf), args.jobs),
            )
            p50, p99 = await bench_pickup(config(server.url, 8, f"l{r}"), args.latency_samples)
            add("idle pickup latency p50 (ms)", p50)
            add("idle pickup latency p99 (ms)", p99)
            p50, p99 = await bench_pickup(config(server.url, 8, f"lw{r}", handoff=False), args.latency_samples)
            add("idle pickup latency p50, worker.handoff off (ms)", p50)
            add("idle pickup latency p99, worker.handoff off (ms)", p99)
            await _flush(server)
        return {k: statistics.median(v) for k, v in results.items()}
    finally:
        server.cleanup()


async def _flush(server: RedisServer) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(server.url)
    await r.flushall()
    await r.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    base = res["redis-benchmark LPUSH -c 1 (ops/s)"]
    width = max(len(k) for k in res)
    print(f"median of {args.repeat} runs; ratio = value / redis-benchmark LPUSH ops/s of the same run")
    print(f"{'measure':<{width}}  {'value':>12}  {'ratio':>7}")
    for k, v in res.items():
        ratio = f"{v / base:7.3f}" if k.endswith("jobs/s)") or k.endswith("ops/s)") else "      -"
        print(f"{k:<{width}}  {v:>12,.2f}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
