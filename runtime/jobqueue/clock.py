"""Time as an injected dependency: scripts take now_ms, tests move a fake clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (shared with Redis-stored deadlines)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for local intervals."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests advance by hand."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._ms += round(seconds * 1000)
        self._mono += seconds


SYSTEM_CLOCK = SystemClock()
