"""Retry delay: exponential from a base, capped, with symmetric jitter (dramatiq's compute_backoff)."""

from __future__ import annotations

import random


def compute_backoff(
    attempt: int,
    base_s: float,
    max_s: float,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """Delay in seconds before retry number ``attempt`` (1 = first retry).

    base * 2**(attempt-1), capped at max, then spread by ±jitter and re-capped, so a burst of
    failures does not retry in lockstep and the cap stays a cap.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    exp = min(attempt - 1, 62)
    delay: float = min(base_s * (2**exp), max_s)
    if jitter:
        r: float = (rng or random).uniform(-jitter, jitter)
        delay = min(max(delay * (1 + r), 0.0), max_s)
    return delay
