"""A private redis-server for tests and benchmarks: a free port, no persistence, stopped at exit.

The machine's shared Redis (6379) is never touched: tests must not depend on it or flush it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, *extra: str, port: int | None = None, binary: str = "redis-server") -> None:
        path = shutil.which(binary)
        if path is None:
            raise RuntimeError(
                f"{binary} not found on PATH: the test suite needs a real Redis "
                "(Debian: apt-get install redis-server). Tests never use a shared Redis."
            )
        self.binary = path
        self.extra = list(extra)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobqueue-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra,
        ]
        with open(self.dir / "stderr.log", "wb") as err_file:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err_file)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.dir / "stderr.log").read_text(errors="replace")
                log = (self.dir / "redis.log").read_text() if (self.dir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server exited at start: {err}{log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
