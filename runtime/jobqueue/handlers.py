"""Job handlers: the registry that maps a job's ``type`` to a function, and the default handler.

A job can only make a worker call a handler registered here or configured by import path in
``worker.handler``; nothing in a payload is ever imported or evaluated.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from jobqueue.errors import ConfigError, JobQueueError
from jobqueue.job import Job

Handler = Callable[[Job], Any]
F = TypeVar("F", bound=Handler)


class HandlerRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, Handler] = {}

    def register(self, name: str, func: Handler) -> None:
        if not name:
            raise JobQueueError("a handler name must be non-empty ('' is the default handler)")
        existing = self._by_type.get(name)
        if existing is not None and existing is not func:
            raise JobQueueError(f"handler {name!r} is already registered to {existing!r}")
        self._by_type[name] = func

    def get(self, name: str) -> Handler | None:
        return self._by_type.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_type)


#: Handlers registered with the @job decorator at import time.
default_registry = HandlerRegistry()


def job(name: str | None = None, *, registry: HandlerRegistry | None = None) -> Callable[[F], F]:
    """Register a function as the handler of jobs of type ``name`` (default: the function's name)."""

    def decorate(func: F) -> F:
        (registry or default_registry).register(name or func.__name__, func)
        return func

    return decorate


def import_handler(path: str) -> Handler:
    """Resolve 'package.module:function' (from config, never from a job)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError([f"worker.handler: cannot import module {module_name!r}: {err}"]) from None
    func = getattr(module, attr, None)
    if func is None or not callable(func):
        raise ConfigError([f"worker.handler: {module_name!r} has no callable {attr!r}"])
    return func  # type: ignore[no-any-return]


def import_modules(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError([f"worker.handler_modules: cannot import {name!r}: {err}"]) from None


def is_async(func: Handler) -> bool:
    """True for coroutine functions and for objects whose __call__ is one (run on the loop)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


async def process_file(job: Job) -> None:
    """The seed's file-processing simulation: 1 ms per KiB of filesize (at most 1 s); fails on 'fail'."""
    path = job.filepath or ""
    if "fail" in path:
        raise RuntimeError(f"simulated failure processing {path}")
    await asyncio.sleep(min((job.filesize or 0) / 1024 / 1000, 1.0))


async def noop(job: Job) -> None:
    """Does nothing; for benchmarks and smoke tests."""
