"""The built-in autoscaler's decision: a pure function of the queue, the policy and recent history.

Called by handlers/autoscale.py every poll (and when the runtime signals work on an empty
queue). It follows the HPA v2 algorithm where the shapes match (stabilization windows that
remember past recommendations; Pods/Percent rate policies per period; selectPolicy) and adds
what a queue knows and a CPU metric does not:

- the recommendation is ceil(backlog / targetJobsPerWorker), clamped to [min, max];
- never below the number of busy workers (pods holding leases), so busy pods are not removed;
- from zero only when the backlog exceeds activationThreshold;
- to zero only scaleToZeroDelaySeconds after the last sign of work (a job seen or finished);
- paused freezes everything.
Time is an input (``now`` in seconds), so tests replay any timeline without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from jobqueue_operator.models import HPAScalingPolicy, HPAScalingRules, JobQueueSpec

DEFAULT_UP_WINDOW_S = 0
DEFAULT_DOWN_WINDOW_S = 60


@dataclass(frozen=True)
class Rules:
    """Effective HPA-shaped rules for one direction."""

    window_s: float
    select: str = "Max"
    policies: tuple[tuple[str, int, int], ...] = ()  # (type, value, period_s)


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    target_per_worker: int
    activation_threshold: int = 0
    scale_to_zero_delay_s: float = 300.0
    up: Rules = Rules(DEFAULT_UP_WINDOW_S)
    down: Rules = Rules(DEFAULT_DOWN_WINDOW_S)
    paused: bool = False


def _rules(r: HPAScalingRules | None, default_window: int) -> Rules:
    if r is None:
        return Rules(default_window)
    window = default_window if r.stabilization_window_seconds is None else r.stabilization_window_seconds
    pols: Sequence[HPAScalingPolicy] = r.policies or ()
    return Rules(window, r.select_policy or "Max", tuple((p.type, p.value, p.period_seconds) for p in pols))


def policy_from_spec(spec: JobQueueSpec) -> Policy:
    s = spec.scaling
    return Policy(
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        target_per_worker=spec.target_per_worker(),
        activation_threshold=s.activation_threshold,
        scale_to_zero_delay_s=s.scale_to_zero_delay_seconds,
        up=_rules(s.behavior.scale_up, DEFAULT_UP_WINDOW_S),
        down=_rules(s.behavior.scale_down, DEFAULT_DOWN_WINDOW_S),
        paused=s.paused,
    )


@dataclass(frozen=True)
class Observation:
    now: float
    """Seconds on any monotonic-enough clock shared with History."""
    current: int
    """Replicas the Deployment has now (its spec.replicas)."""
    backlog: int
    """Work that needs a worker (pending + in flight + due retries, per the spec's counting)."""
    busy: int = 0
    """Worker pods holding at least one job."""
    last_active: float | None = None
    """When work was last seen or a job last finished; None: never (no delay applies)."""


@dataclass(frozen=True)
class History:
    """What the decision remembers: past recommendations and past scale changes."""

    recommendations: tuple[tuple[float, int], ...] = ()
    changes: tuple[tuple[float, int, int], ...] = ()  # (when, from, to)
    started: float | None = None  # first decision: no scale-down until a full window is observed

    def trimmed(self, now: float, keep_s: float) -> History:
        return History(
            tuple(r for r in self.recommendations if now - r[0] <= keep_s),
            tuple(c for c in self.changes if now - c[0] <= keep_s),
            self.started,
        )


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    history: History = field(default_factory=History)


def _recommend(p: Policy, o: Observation) -> tuple[int, str]:
    if o.current == 0 and o.backlog <= p.activation_threshold:
        raw, why = 0, f"backlog {o.backlog} not above activation threshold {p.activation_threshold}"
    else:
        raw = math.ceil(o.backlog / p.target_per_worker) if o.backlog > 0 else 0
        why = f"backlog {o.backlog} / {p.target_per_worker} per worker = {raw}"
    if o.busy > raw:
        raw, why = o.busy, f"{why}; {o.busy} busy workers kept"
    recent = o.last_active is not None and o.now - o.last_active < p.scale_to_zero_delay_s
    if raw == 0 and o.current > 0 and recent and o.last_active is not None:
        idle = max(0.0, o.now - o.last_active)
        raw, why = 1, f"{why}; idle {idle:.1f}s < scale-to-zero delay {p.scale_to_zero_delay_s:g}s"
    clamped = min(max(raw, p.min_replicas), p.max_replicas)
    if clamped != raw:
        why = f"{why}; clamped to [{p.min_replicas}, {p.max_replicas}]"
    return clamped, why


def _period_start(changes: Sequence[tuple[float, int, int]], now: float, period: int, current: int) -> int:
    """Replicas at the start of the policy's period: undo the changes made within it."""
    start = current
    for when, before, after in changes:
        if now - when <= period:
            start -= after - before
    return max(start, 0)


def _limit(rules: Rules, history: History, now: float, current: int, up: bool) -> int | None:
    """The furthest the rate policies let replicas move now; None: no limit."""
    if rules.select == "Disabled":
        return current
    if not rules.policies:
        return None
    limits = []
    for kind, value, period in rules.policies:
        base = _period_start(history.changes, now, period, current)
        if up:
            limits.append(base + value if kind == "Pods" else math.ceil(max(base, 1) * (1 + value / 100)))
        else:
            limits.append(base - value if kind == "Pods" else math.floor(base * (1 - value / 100)))
    pick_largest_change = rules.select == "Max"
    if up:
        return max(limits) if pick_largest_change else min(limits)
    return min(limits) if pick_largest_change else max(limits)


def decide(p: Policy, o: Observation, history: History = History()) -> Decision:
    """Replicas wanted now, why, and the history to pass to the next call."""
    if p.paused:
        return Decision(o.current, "", history)
    rec, why = _recommend(p, o)
    if history.started is None:
        history = replace(history, started=o.now)
    keep = max(
        p.up.window_s,
        p.down.window_s,
        *(pol[2] for pol in p.up.policies + p.down.policies),
        1,
    )
    hist = History((*history.recommendations, (o.now, rec)), history.changes, history.started).trimmed(o.now, keep)
    in_up = [r for t, r in hist.recommendations if o.now - t <= p.up.window_s]
    in_down = [r for t, r in hist.recommendations if o.now - t <= p.down.window_s]
    up_rec, down_rec = min(in_up), max(in_down)
    if hist.started is not None and o.now - hist.started < p.down.window_s:
        down_rec = max(down_rec, o.current)  # after a (re)start we have not seen a whole window yet
    if rec == 0 and down_rec <= 1:
        # The last step to zero is governed by scaleToZeroDelaySeconds, already waited in _recommend.
        down_rec = 0
    desired, reason = o.current, ""
    if up_rec > o.current:
        desired, reason = up_rec, f"up: {why}"
        limit = _limit(p.up, hist, o.now, o.current, up=True)
        if limit is not None and limit < desired:
            desired, reason = max(limit, o.current), f"{reason}; limited by scaleUp policy to {limit}"
    elif down_rec < o.current:
        desired, reason = down_rec, f"down: {why}"
        if down_rec != rec:
            reason = f"{reason}; highest recommendation in the {p.down.window_s:g}s window is {down_rec}"
        limit = _limit(p.down, hist, o.now, o.current, up=False)
        if limit is not None and limit > desired:
            desired, reason = min(limit, o.current), f"{reason}; limited by scaleDown policy to {limit}"
    if desired != o.current:
        hist = History(hist.recommendations, (*hist.changes, (o.now, o.current, desired)), hist.started)
    else:
        reason = ""
    return Decision(desired, reason, hist)
