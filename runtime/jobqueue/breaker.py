"""Rolling-window circuit breaker that gates how many jobs a worker may claim.

Closed: claims flow. When at least ``min_samples`` outcomes in ``window`` fail at a rate of at
least ``failure_threshold``, it opens: no claims for ``cooldown_period``. Then it is half-open and
admits exactly one probe job; the probe's success closes it, its failure re-opens it.
Only handler failures count (exceptions, timeouts, RetryJob); a malformed payload or a
PermanentJobError is the job's fault, not a sign that a dependency is down.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from jobqueue.clock import SYSTEM_CLOCK, Clock
from jobqueue.config import CircuitBreakerConfig


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        cfg: CircuitBreakerConfig,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[BreakerState, BreakerState, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = BreakerState.CLOSED
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._on_change = on_change

    def allow(self, wanted: int) -> int:
        """How many of ``wanted`` claims may go ahead now."""
        if not self.cfg.enabled or wanted <= 0:
            return max(wanted, 0)
        if self.state is BreakerState.OPEN:
            if self.clock.monotonic() - self._opened_at < self.cfg.cooldown_period.total_seconds():
                return 0
            self._set(BreakerState.HALF_OPEN, "cooldown over, admitting one probe")
        if self.state is BreakerState.HALF_OPEN:
            if self._probe_out:
                return 0
            self._probe_out = True
            return 1
        return wanted

    def probe_not_used(self) -> None:
        """The probe slot was granted but no job was claimed; let the next claim probe instead."""
        if self.state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def seconds_until_probe(self) -> float | None:
        if self.state is not BreakerState.OPEN:
            return None
        left = self.cfg.cooldown_period.total_seconds() - (self.clock.monotonic() - self._opened_at)
        return max(left, 0.0)

    @property
    def probing(self) -> bool:
        """True while half-open: the job claimed now is the probe."""
        return self.state is BreakerState.HALF_OPEN

    def record(self, ok: bool, probe: bool = False) -> None:
        """Count one handler outcome; ``probe`` marks the job admitted while half-open."""
        if not self.cfg.enabled:
            return
        if self.state is BreakerState.HALF_OPEN:
            if not probe:
                return  # a job from before the breaker opened: not the probe
            self._probe_out = False
            if ok:
                self._outcomes.clear()
                self._failures = 0
                self._set(BreakerState.CLOSED, "probe job succeeded")
            else:
                self._open("probe job failed")
            return
        now = self.clock.monotonic()
        self._outcomes.append((now, ok))
        if not ok:
            self._failures += 1
        horizon = now - self.cfg.window.total_seconds()
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old_ok = self._outcomes.popleft()
            if not old_ok:
                self._failures -= 1
        total = len(self._outcomes)
        if (
            self.state is BreakerState.CLOSED
            and total >= self.cfg.min_samples
            and self._failures / total >= self.cfg.failure_threshold
        ):
            self._open(f"{self._failures}/{total} jobs failed in the last {self.cfg.window.total_seconds():g}s")

    def _open(self, why: str) -> None:
        self._opened_at = self.clock.monotonic()
        self._set(BreakerState.OPEN, why)

    def _set(self, new: BreakerState, why: str) -> None:
        old, self.state = self.state, new
        if old is not new and self._on_change is not None:
            self._on_change(old, new, why)
