"""The scaling decision as tables: one step, and timelines replayed through the history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from jobqueue_operator import scaling
from jobqueue_operator.models import parse_spec
from jobqueue_operator.scaling import History, Observation, Policy, Rules, decide

BASE = Policy(
    min_replicas=0, max_replicas=10, target_per_worker=10, scale_to_zero_delay_s=30, up=Rules(0), down=Rules(60)
)


@pytest.mark.parametrize(
    ("name", "policy", "obs", "desired"),
    [
        ("a burst scales up at once", BASE, Observation(0, 1, 95), 10),
        ("the recommendation rounds up", BASE, Observation(0, 1, 21), 3),
        ("clamped to max", BASE, Observation(0, 2, 10_000), 10),
        ("clamped to min", replace(BASE, min_replicas=2), Observation(0, 2, 0, last_active=-100), 2),
        (
            "from zero: backlog at the activation threshold stays at zero",
            replace(BASE, activation_threshold=5),
            Observation(0, 0, 5),
            0,
        ),
        (
            "from zero: backlog above the activation threshold wakes",
            replace(BASE, activation_threshold=5),
            Observation(0, 0, 6),
            1,
        ),
        ("activation only applies from zero", replace(BASE, activation_threshold=50), Observation(0, 1, 30), 3),
        ("zero stays zero with no work", BASE, Observation(0, 0, 0), 0),
        ("a fresh start waits a window before scaling down", BASE, Observation(0, 5, 10), 5),
        (
            "to zero only after the delay (still 1 inside it)",
            replace(BASE, down=Rules(0)),
            Observation(100, 3, 0, last_active=90),
            1,
        ),
        ("to zero after the delay", replace(BASE, down=Rules(0)), Observation(100, 1, 0, last_active=60), 0),
        ("never below busy workers", replace(BASE, down=Rules(0)), Observation(0, 6, 10, busy=4), 4),
        ("busy workers never lift above max", replace(BASE, max_replicas=3), Observation(0, 3, 0, busy=5), 3),
        ("paused freezes", replace(BASE, paused=True), Observation(0, 2, 1000), 2),
        ("scaleUp Disabled holds", replace(BASE, up=Rules(0, "Disabled")), Observation(0, 1, 100), 1),
        (
            "scaleUp Pods policy limits the step",
            replace(BASE, up=Rules(0, "Max", (("Pods", 2, 60),))),
            Observation(0, 1, 100),
            3,
        ),
        (
            "scaleUp Percent policy limits the step",
            replace(BASE, up=Rules(0, "Max", (("Percent", 100, 60),))),
            Observation(0, 2, 100),
            4,
        ),
        (
            "selectPolicy Max takes the larger step",
            replace(BASE, up=Rules(0, "Max", (("Pods", 1, 60), ("Percent", 200, 60)))),
            Observation(0, 2, 100),
            6,
        ),
        (
            "selectPolicy Min takes the smaller step",
            replace(BASE, up=Rules(0, "Min", (("Pods", 1, 60), ("Percent", 200, 60)))),
            Observation(0, 2, 100),
            3,
        ),
        (
            "scaleDown Pods policy limits the step",
            replace(BASE, down=Rules(0, "Max", (("Pods", 2, 60),))),
            Observation(0, 8, 10, last_active=-100),
            6,
        ),
    ],
)
def test_one_decision(name: str, policy: Policy, obs: Observation, desired: int) -> None:
    assert decide(policy, obs).desired == desired, name


def replay(policy: Policy, steps: Sequence[tuple[float, int, int]], start: int) -> list[int]:
    """Feed (time, backlog, busy) steps through decide(), applying each decision; the replicas after each."""
    history, current, out, last_active = History(), start, [], None
    for now, backlog, busy in steps:
        if backlog > 0 or last_active is None:
            last_active = now
        d = decide(policy, Observation(now, current, backlog, busy, last_active), history)
        history, current = d.history, d.desired
        out.append(current)
    return out


def test_a_burst_then_drain_goes_up_at_once_then_down_after_the_window_then_to_zero_after_the_delay() -> None:
    policy = replace(BASE, down=Rules(20), scale_to_zero_delay_s=30)
    steps = [
        (0, 0, 0),
        (5, 80, 0),
        (10, 80, 8),
        (15, 30, 3),
        (20, 0, 0),
        (30, 0, 0),
        (36, 0, 0),
        (41, 0, 0),
        (49, 0, 0),
        (51, 0, 0),
    ]
    assert replay(policy, steps, start=0) == [0, 8, 8, 8, 8, 8, 1, 1, 0, 0]


def test_flapping_input_does_not_flap_replicas() -> None:
    policy = replace(BASE, down=Rules(30))
    steps = [(float(t), 50 if t % 10 == 0 else 5, 0) for t in range(0, 60, 5)]
    out = replay(policy, steps, start=1)
    assert out[0] == 5 and set(out) == {5}, out


def test_stabilization_uses_the_highest_recommendation_in_the_window() -> None:
    policy = replace(BASE, down=Rules(30))
    out = replay(policy, [(0, 100, 0), (10, 60, 0), (20, 30, 0), (31, 30, 0), (41, 30, 0)], start=1)
    assert out == [10, 10, 10, 6, 3]


def test_the_reason_says_why() -> None:
    d = decide(BASE, Observation(0, 1, 40))
    assert d.desired == 4 and d.reason.startswith("up: backlog 40 / 10 per worker = 4")
    assert decide(BASE, Observation(0, 4, 40)).reason == ""


def test_policy_from_spec_defaults_to_worker_concurrency_and_hpa_shaped_rules() -> None:
    spec = parse_spec(
        {
            "worker": {"concurrency": 8},
            "scaling": {
                "minReplicas": 0,
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 5,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
                    }
                },
            },
        }
    )
    p = scaling.policy_from_spec(spec)
    assert p.target_per_worker == 8
    assert p.up == Rules(scaling.DEFAULT_UP_WINDOW_S)
    assert p.down == Rules(5, "Max", (("Pods", 1, 10),))
