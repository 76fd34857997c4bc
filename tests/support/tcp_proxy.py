"""A small TCP proxy for fault injection between jobqueue processes and Redis.

Used by the chaos suite (tests/chaos, hack/chaos.py): workers connect to the proxy, the proxy
to Redis. It runs its own asyncio loop in a daemon thread, so the controlling code may be sync
or async, and every control method is thread-safe:

- ``cut()``: close every open connection now (both sides), as a dropped network path would.
- ``outage(True/False)``: while on, cut everything and refuse new connections (ECONNREFUSED).
- ``set_delay(s)``: add latency to every chunk forwarded in either direction.

Only loopback addresses are used: the proxy listens on 127.0.0.1 and forwards to a local port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = listen_port or _free_port()
        self.delay_s = 0.0
        self.connections_total = 0
        self.cuts = 0
        self._down = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> int:
        """Close every open connection; returns how many were cut."""
        return int(self._call(self._cut_all))

    def outage(self, down: bool) -> None:
        """Start (True) or end (False) a full outage: no connection lives or is accepted."""
        self._call(self._set_down, down)

    def set_delay(self, seconds: float) -> None:
        self.delay_s = max(seconds, 0.0)

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # ------------------------------------------------------------------ inside the loop

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _shutdown(self) -> None:
        self._cut_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _set_down(self, down: bool) -> None:
        self._down = down
        if down:
            self._cut_all()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        elif self._server is None:
            await self._listen()

    def _cut_all(self) -> int:
        pairs = list(self._pairs)
        for client, upstream in pairs:
            for w in (client, upstream):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._pairs.clear()
        if pairs:
            self.cuts += 1
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # upstream down: the client sees its connection dropped
            return
        self.connections_total += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
