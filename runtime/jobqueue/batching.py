"""Group commit for single enqueues: calls that arrive while one is in flight share the next
round trip. A lone caller pays nothing extra (it sends at once); many concurrent callers send
one script call per round trip instead of one each, which is where their time went (a syscall
and a Redis command per job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupCommit(Generic[ItemT, ResultT]):
    def __init__(self, send: Callable[[list[ItemT]], Awaitable[list[ResultT]]], max_batch: int = 1000) -> None:
        self._send = send
        self._max = max_batch
        self._busy = False
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        if self._busy:
            fut: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
            self._pending.append((item, fut))
            return await fut
        self._busy = True
        try:
            return (await self._send([item]))[0]
        finally:
            # Hand over to whoever queued up meanwhile (inline: a lone caller's only extra cost).
            if self._pending:
                self._drainer = asyncio.create_task(self._drain(), name="jobqueue-enqueue-batch")
            else:
                self._busy = False

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if not live:
                    continue
                try:
                    results = await self._send([item for item, _ in live])
                except BaseException as err:  # every waiter of this batch learns of the failure
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(err if isinstance(err, Exception) else asyncio.CancelledError())
                    if not isinstance(err, Exception):
                        raise
                    continue
                for (_, fut), result in zip(live, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._busy = False
            self._drainer = None
