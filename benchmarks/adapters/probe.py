"""The worker side of the measurement: every library's no-op handler calls ``hit(i)`` and nothing else.

It tells the benchmark process, by one UDP datagram on loopback, when a job started:
- ``i < 0`` is a pickup-latency (or readiness) job: always reported, with its id;
- ``i >= 0`` is a throughput job: counted in this process; the 1st, every ``EVERY``-th and the
  ``BENCH_TARGET``-th are reported, so the hot path costs one ``next()`` on a counter (plus a
  datagram per 100 jobs) and the benchmark can end a slow library's run after a time budget.
  Where a library runs jobs in several processes (RQ forks one per job), ``BENCH_PROBE_EACH=1``
  reports every job and the benchmark process does the counting.

Timestamps are ``time.monotonic_ns()``: one system-wide clock on Linux, so they compare across
processes. The environment is read once at import; the worker process is started with it.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import time

_PORT = int(os.environ.get("BENCH_PROBE_PORT", "0"))
_TARGET = int(os.environ.get("BENCH_TARGET", "0"))
_EACH = os.environ.get("BENCH_PROBE_EACH") == "1"
_ADDR = ("127.0.0.1", _PORT)
_count = itertools.count(1)  # next() is atomic under the GIL: safe from handler threads
EVERY = 100


def hit(i: int) -> None:
    now = time.monotonic_ns()
    if i < 0 or _EACH:
        _send(i, 0, now)
        return
    n = next(_count)
    if n == 1 or n % EVERY == 0 or n == _TARGET:
        _send(i, n, now)


@functools.cache
def _socket() -> socket.socket:
    """Made on first use: only worker processes send (an unused one would warn at exit)."""
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _send(i: int, n: int, now: int) -> None:
    if _PORT:
        _socket().sendto(f"{i} {n} {now}".encode(), _ADDR)
