"""Pure logic: the retry backoff and the circuit breaker's transitions (fake clock, no sleeps)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from jobqueue.backoff import compute_backoff
from jobqueue.breaker import BreakerState, CircuitBreaker
from jobqueue.clock import FakeClock
from jobqueue.config import CircuitBreakerConfig


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (60, 10.0)]
)
def test_backoff_doubles_from_the_base_and_is_capped(attempt: int, expected: float) -> None:
    assert compute_backoff(attempt, 0.5, 10.0, jitter=0) == expected


def test_backoff_jitter_spreads_within_bounds_and_never_exceeds_the_cap() -> None:
    rng = random.Random(7)
    values = [compute_backoff(2, 0.5, 10.0, 0.2, rng) for _ in range(500)]
    assert min(values) >= 0.8 and max(values) <= 1.2
    assert len(set(values)) > 100
    assert all(compute_backoff(10, 0.5, 10.0, 0.5, rng) <= 10.0 for _ in range(100))


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        compute_backoff(0, 1, 2)


def make(clock: FakeClock, changes: list[tuple[BreakerState, BreakerState]], **kw: object) -> CircuitBreaker:
    cfg = CircuitBreakerConfig(
        failure_threshold=0.5, window=timedelta(seconds=60), cooldown_period=timedelta(seconds=30), min_samples=4
    ).model_copy(update=kw)
    return CircuitBreaker(cfg, clock, on_change=lambda old, new, why: changes.append((old, new)))


def test_breaker_stays_closed_below_min_samples_even_if_all_fail() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for _ in range(3):
        b.record(False)
    assert b.state is BreakerState.CLOSED and b.allow(8) == 8


def test_breaker_opens_at_the_threshold_and_blocks_claims_for_the_cooldown() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for ok in (True, True, False, False):
        b.record(ok)
    assert b.state is BreakerState.OPEN
    assert b.allow(8) == 0
    clock.advance(29)
    assert b.allow(8) == 0
    assert b.seconds_until_probe() == pytest.approx(1)
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]


def test_half_open_admits_exactly_one_probe_and_its_success_closes() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for _ in range(4):
        b.record(False)
    clock.advance(30)
    assert b.allow(8) == 1
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow(8) == 0  # the probe is out: nobody else
    b.record(False)  # a late outcome of a job from before the trip is not the probe
    assert b.state is BreakerState.HALF_OPEN
    b.record(True, probe=True)
    assert b.state is BreakerState.CLOSED and b.allow(8) == 8
    assert changes[-2:] == [(BreakerState.OPEN, BreakerState.HALF_OPEN), (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for _ in range(4):
        b.record(False)
    clock.advance(30)
    assert b.allow(1) == 1
    b.record(False, probe=True)
    assert b.state is BreakerState.OPEN and b.allow(1) == 0
    clock.advance(30)
    assert b.allow(5) == 1


def test_an_unused_probe_slot_is_given_back() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for _ in range(4):
        b.record(False)
    clock.advance(30)
    assert b.allow(3) == 1
    b.probe_not_used()  # the claim found an empty queue
    assert b.allow(3) == 1


def test_old_outcomes_leave_the_window() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes)
    for _ in range(3):
        b.record(False)
    clock.advance(61)
    for _ in range(3):
        b.record(True)
    b.record(False)
    assert b.state is BreakerState.CLOSED  # 1 of 4 in the window


def test_a_disabled_breaker_always_allows() -> None:
    clock, changes = FakeClock(), []
    b = make(clock, changes, enabled=False)
    for _ in range(100):
        b.record(False)
    assert b.allow(5) == 5 and changes == []
