"""Handlers for the observability tests: the worker imports this module (worker.handler_modules)."""

from __future__ import annotations

from jobqueue import Job, PermanentJobError, job


@job("ok")
async def ok(job: Job) -> None:
    """Succeeds."""


@job("flaky")
async def flaky(job: Job) -> None:
    """Fails on its first attempt only."""
    if job.retries == 0:
        raise RuntimeError("first attempt fails")


@job("broken")
async def broken(job: Job) -> None:
    """Always fails (retried, then dead-lettered)."""
    raise RuntimeError("always fails")


@job("poison")
def poison(job: Job) -> None:
    """A sync handler that gives up at once: straight to the dead-letter queue."""
    raise PermanentJobError("cannot ever work")


async def default(job: Job) -> None:
    """The handler of untyped (file) jobs: succeeds."""
