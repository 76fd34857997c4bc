"""The producer role (the seed's behaviour): one pass over scan_dir, one job per matching file.

Files with a high-priority extension go to the first priority, the rest to default_priority.
Throughput is capped by a fixed 1 s window shared in Redis by all producers; when the window is
spent the producer sleeps until it ends (the key's TTL) plus a little jitter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from wcmatch import glob

from jobqueue.api import JobSpec, Queue
from jobqueue.config import ProducerConfig
from jobqueue.metrics import Metrics

log = logging.getLogger("jobqueue.producer")

_FLAGS = glob.GLOBSTAR | glob.DOTGLOB
CHUNK = 50
"""Most files enqueued per round trip (also the most permits taken from the window at once)."""


def scan(cfg: ProducerConfig) -> Iterator[tuple[Path, str]]:
    """(path, relative path) of the files to enqueue, in a stable order."""
    root = Path(cfg.scan_dir)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if glob.globmatch(rel, cfg.include_globs, flags=_FLAGS) and not glob.globmatch(
                rel, cfg.exclude_globs, flags=_FLAGS
            ):
                yield path, rel


class RateLimiter:
    """Takes permits from the shared window, sleeping when it is spent."""

    def __init__(self, queue: Queue, per_sec: int, rng: random.Random | None = None) -> None:
        self.queue = queue
        self.per_sec = per_sec
        self.rng = rng or random.Random()

    async def acquire(self, n: int) -> None:
        if self.per_sec <= 0:
            return
        while True:
            wait_ms = await self.queue.broker.rate_limit(self.per_sec, 1000, n)
            if wait_ms == 0:
                return
            await asyncio.sleep(wait_ms / 1000 + self.rng.uniform(0, 0.005))


class Producer:
    def __init__(self, queue: Queue, metrics: Metrics | None = None) -> None:
        self.queue = queue
        self.cfg = queue.config.producer
        self.metrics = metrics or Metrics()
        self.high = queue.config.worker.priorities[0]
        self.exts = {e.lower() for e in self.cfg.high_priority_exts}

    def spec_for(self, path: Path) -> JobSpec:
        priority = self.high if path.suffix.lower() in self.exts else self.cfg.default_priority
        return JobSpec(priority=priority, filepath=str(path), filesize=path.stat().st_size)

    def collect(self) -> list[JobSpec]:
        """Walk scan_dir (blocking; run in a thread so a worker sharing the loop is not stalled)."""
        specs = []
        for path, _ in scan(self.cfg):
            try:
                specs.append(self.spec_for(path))
            except OSError as err:
                log.warning("skipping unreadable file", extra={"path": str(path), "error": str(err)})
        return specs

    async def run(self, stop: asyncio.Event) -> int:
        """One pass; returns the number of jobs enqueued."""
        root = Path(self.cfg.scan_dir)
        if not await asyncio.to_thread(root.is_dir):
            log.warning("scan_dir does not exist; nothing to enqueue", extra={"scan_dir": str(root)})
            return 0
        specs = await asyncio.to_thread(self.collect)
        chunk_size = min(CHUNK, self.cfg.rate_limit_per_sec) if self.cfg.rate_limit_per_sec else CHUNK
        limiter = RateLimiter(self.queue, self.cfg.rate_limit_per_sec)
        total = 0
        for i in range(0, len(specs), chunk_size):
            if stop.is_set():
                break
            total += await self._send(specs[i : i + chunk_size], limiter)
        log.info("producer pass done", extra={"enqueued": total, "scan_dir": str(root)})
        return total

    async def _send(self, chunk: list[JobSpec], limiter: RateLimiter) -> int:
        await limiter.acquire(len(chunk))
        await self.queue.enqueue_many(chunk)
        for priority, n in Counter(spec.priority or self.cfg.default_priority for spec in chunk).items():
            self.metrics.queue(priority).produced.inc(n)
        return len(chunk)
