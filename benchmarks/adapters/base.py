"""What every library adapter provides, and the machinery they share: the probe receiver that
learns when jobs start (see ``probe.py``) and the worker subprocess.

An adapter is the producer side of one library, used in the benchmark process, plus the command
that starts that library's own worker, in its own process, the way its documentation says to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

BENCH_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
"""Console scripts of the interpreter running the benchmark (the bench venv's bin/)."""


class Adapter:
    """One library: open a producer, enqueue no-op jobs, and say how to start its worker."""

    name: ClassVar[str]
    """Row label in the table."""
    dist: ClassVar[str]
    """Distribution name, for the version column."""
    delivery: ClassVar[str]
    """Delivery guarantee when a worker dies mid-job, with the settings used here."""
    settings: ClassVar[str]
    """Exact worker/producer settings used, for the README."""
    bulk_api: ClassVar[str | None] = None
    """The library's many-jobs-at-once enqueue call, if it has one, and whether it batches."""
    guarantee: ClassVar[str]
    """Short form of ``delivery`` for the table."""
    at_least_once: ClassVar[bool] = False
    """True if a job whose worker died is run again without per-job opt-in, with these settings."""
    probe_each: ClassVar[bool] = False
    """Jobs run in several processes: count them in the benchmark process (see probe.py)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        """Connect the producer (may be a no-op for lazily connecting clients)."""

    async def close(self) -> None:
        """Release the producer's connections."""

    async def enqueue(self, i: int) -> None:
        """Enqueue one no-op job whose handler calls ``probe.hit(i)``; returns when the library does."""
        raise NotImplementedError

    async def enqueue_bulk(self, ids: range) -> None:
        """Enqueue many jobs with the library's bulk API (only if ``bulk_api`` is set)."""
        raise NotImplementedError

    async def fill(self, ids: range) -> None:
        """Put jobs in the queue as fast as this API allows (untimed; for the processing run):
        the bulk API, else 100 concurrent enqueues at a time (sequential for blocking clients)."""
        if self.bulk_api:
            await self.enqueue_bulk(ids)
            return
        for start in range(ids.start, ids.stop, 100):
            await asyncio.gather(*(self.enqueue(i) for i in range(start, min(start + 100, ids.stop))))

    def worker_command(self) -> list[str]:
        """argv of this library's worker, concurrency 8, in one process where the library can."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- probe


@dataclass
class _Run:
    target: int
    count_each: bool
    seen: int = 0
    """Jobs started so far, as last reported."""
    first_ns: int | None = None
    last_ns: int = 0
    """When the ``seen``-th job started."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ProbeReceiver(asyncio.DatagramProtocol):
    """Collects the datagrams of ``probe.hit``: pickup times by job id, and throughput runs."""

    def __init__(self) -> None:
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._pickups: dict[int, asyncio.Future[int]] = {}
        self._run: _Run | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.port = int(sock.getsockname()[1])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        i_s, n_s, t_s = data.split()
        i, n, t = int(i_s), int(n_s), int(t_s)
        if i < 0:
            fut = self._pickups.get(i)
            if fut is not None and not fut.done():
                fut.set_result(t)
            return
        run = self._run
        if run is None:
            return
        if run.count_each:
            run.seen += 1
            run.first_ns = t if run.first_ns is None else min(run.first_ns, t)
            run.last_ns = max(run.last_ns, t)
            if run.seen >= run.target:
                run.done.set()
        else:
            if n == 1:
                run.first_ns = t
            if n > run.seen:
                run.seen, run.last_ns = n, t
            if n >= run.target:
                run.done.set()

    def expect_pickup(self, i: int) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pickups[i] = fut
        fut.add_done_callback(lambda _: self._pickups.pop(i, None))
        return fut

    def start_run(self, target: int, count_each: bool) -> _Run:
        self._run = _Run(target, count_each)
        return self._run


# ---------------------------------------------------------------------------------------- worker


class WorkerProcess:
    """A library's worker in its own process group (so its children stop with it); log to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=BENCH_DIR, start_new_session=True
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the group (every library's warm shutdown), SIGKILL after ``grace_s``."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is our child's pid
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait()
        # Children that outlived their parent (forked work-horses) go too.
        deadline = time.monotonic() + 2
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
