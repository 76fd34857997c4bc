"""The built-in autoscaler: one kopf daemon per JobQueue, polling its queue and scaling its workers.

Each cycle (every spec.scaling.pollIntervalSeconds, or at once when the runtime announces work
on an empty queue): read the queue in one round trip, decide with scaling.decide(), patch the
Deployment's and the JobQueue's replicas when the decision changes them (with a ScaledUp /
ScaledDown Event saying from, to and why), and write the status. In ``hpa`` mode or when paused
it only reports. When Redis cannot be read it keeps the replicas, sets RedisReachable=False,
posts one Event per outage, and tries again next poll: a daemon never crash-loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError
from redis.exceptions import RedisError

from jobqueue_operator import builders, scaling
from jobqueue_operator.handlers.common import conditions_of, kube_of, read_credentials, refresh_ready, write_status
from jobqueue_operator.kube import APIError, Kube
from jobqueue_operator.models import JobQueueSpec, parse_spec
from jobqueue_operator.queue import CredentialsMissing, QueueProbe
from jobqueue_operator.status import Conditions, now_iso, phase

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
STATS_TIMEOUT_S = 5.0
INVALID_RETRY_S = 5.0
MISSING_RETRY_S = 0.5


@dataclass
class ScalerState:
    """What one JobQueue's daemon remembers between cycles (lost on restart, like the HPA's)."""

    history: scaling.History = field(default_factory=scaling.History)
    last_active: float | None = None
    last_active_iso: str | None = None
    last_scale_iso: str | None = None
    finished: int | None = None  # lifetime counters of finished jobs at the last poll
    probe: QueueProbe | None = None
    probe_key: str | None = None
    last_status: dict[str, Any] | None = None


class Scaler:
    def __init__(
        self, kube: Kube, body: Any, *, name: str, namespace: str, memo: MutableMapping[str, Any], logger: Logger
    ) -> None:
        self.kube, self.body, self.name, self.namespace = kube, body, name, namespace
        self.memo, self.logger = memo, logger
        self.state: ScalerState = memo.setdefault("scaler", ScalerState())
        self.names = builders.Names.of(name)

    @property
    def conditions(self) -> Conditions:
        return conditions_of(self.memo, self.body.get("status"))

    async def _probe(self, spec: JobQueueSpec) -> QueueProbe:
        """The Redis connection for the current spec.redis (reopened when it or the Secret changes)."""
        creds = await read_credentials(self.kube, self.namespace, spec)
        key = builders.hash_of(
            [
                spec.redis.model_dump(mode="json"),
                spec.queue_name,
                spec.queues,
                creds.username,
                creds.password,
                creds.ca_pem,
            ]
        )
        if self.state.probe is None or self.state.probe_key != key:
            await self.close()
            self.state.probe = QueueProbe.open(self.name, spec, creds)
            self.state.probe_key = key
        return self.state.probe

    async def close(self) -> None:
        if self.state.probe is not None:
            await self.state.probe.close()
            self.state.probe = None

    async def cycle(self) -> float:
        """One poll; returns seconds until the next."""
        try:
            spec = parse_spec(self.body.get("spec"))
        except ValidationError:
            return INVALID_RETRY_S  # reconcile reported it
        if self.memo.get("invalid"):
            return spec.scaling.poll_interval_seconds
        interval = spec.scaling.poll_interval_seconds
        generation = self.body.get("metadata", {}).get("generation")
        conditions = self.conditions
        try:
            probe = await self._probe(spec)
            stats = await asyncio.wait_for(probe.stats(), STATS_TIMEOUT_S)
        except (CredentialsMissing, RedisError, OSError, TimeoutError) as err:
            await self._unreachable(spec, err, generation)
            return interval
        if conditions.set("RedisReachable", True, "Connected", "", generation) and self.state.last_status:
            kopf.event(self.body, type="Normal", reason="RedisReachable", message="the queue can be read again")
        now = time.monotonic()
        finished = sum(stats.counters.values())
        backlog = stats.backlog(spec.scaling.count_in_flight, spec.scaling.count_delayed_due)
        if backlog > 0 or stats.pending > 0 or (self.state.finished is not None and finished != self.state.finished):
            self.state.last_active, self.state.last_active_iso = now, now_iso()
        elif self.state.last_active is None:
            self.state.last_active = now  # unknown before we started: count from now
        self.state.finished = finished

        deployment = await self.kube.get("Deployment", self.namespace, self.names.deployment)
        if deployment is None:
            return min(interval, MISSING_RETRY_S)  # the reconcile handler is creating it
        current = int(deployment.get("spec", {}).get("replicas") or 0)
        desired, busy = current, None
        if spec.scaling.mode == "builtin" and not spec.scaling.paused:
            desired, busy = await self._decide(spec, probe, stats, backlog=backlog, current=current, now=now)
        elif spec.scaling.mode == "hpa":
            desired = spec.replicas if spec.replicas is not None else current
        await self._report(spec, stats, deployment, desired=desired, busy=busy, backlog=backlog, generation=generation)
        return interval

    async def _decide(
        self, spec: JobQueueSpec, probe: QueueProbe, stats: Any, *, backlog: int, current: int, now: float
    ) -> tuple[int, int | None]:
        busy = await probe.busy_workers(stats)  # 0 without a round trip when nothing is in flight
        floor = current if busy is None else busy  # too many to count: assume every pod is busy
        obs = scaling.Observation(now, current, backlog, floor, self.state.last_active)
        decision = scaling.decide(scaling.policy_from_spec(spec), obs, self.state.history)
        self.state.history = decision.history
        if decision.desired != current:
            await self._scale(current, decision)
        return decision.desired, busy

    async def _scale(self, current: int, decision: scaling.Decision) -> None:
        to = decision.desired
        await self.kube.merge_patch("Deployment", self.namespace, self.names.deployment, {"spec": {"replicas": to}})
        await self.kube.merge_patch("JobQueue", self.namespace, self.name, {"spec": {"replicas": to}})
        self.state.last_scale_iso = now_iso()
        reason = "ScaledUp" if to > current else "ScaledDown"
        message = f"from {current} to {to}: {decision.reason}"
        self.logger.info("%s %s", reason, message)
        kopf.event(self.body, type="Normal", reason=reason, message=message)

    async def _unreachable(self, spec: JobQueueSpec, err: BaseException, generation: int | None) -> None:
        why = str(err) or type(err).__name__
        reason = "SecretNotFound" if isinstance(err, CredentialsMissing) else "RedisUnreachable"
        if self.conditions.set("RedisReachable", False, reason, why, generation):
            self.logger.warning("cannot read the queue (replicas kept): %s", why)
            kopf.event(self.body, type="Warning", reason=reason, message=f"replicas kept: {why}")
        await self.close()  # reconnect from scratch next poll
        fields = {"phase": phase(invalid=False, paused=spec.scaling.paused, redis_ok=False, desired=None, polled=True)}
        await self._write(fields, generation)

    async def _report(
        self,
        spec: JobQueueSpec,
        stats: Any,
        deployment: Mapping[str, Any],
        *,
        desired: int,
        busy: int | None,
        backlog: int,
        generation: int | None,
    ) -> None:
        c = self.conditions
        dstatus = deployment.get("status") or {}
        ready = int(dstatus.get("readyReplicas") or 0)
        c.set("Active", backlog > 0, "WorkPending" if backlog > 0 else "Idle", f"backlog {backlog}", generation)
        if ready == desired:
            c.set("Scaling", False, "Stable", f"{ready} of {desired} ready", generation)
        else:
            c.set(
                "Scaling",
                True,
                "ScalingUp" if desired > ready else "ScalingDown",
                f"{ready} of {desired} ready",
                generation,
            )
        paused = spec.scaling.paused
        c.set(
            "Paused",
            paused,
            "Paused" if paused else "NotPaused",
            "spec.scaling.paused freezes replicas" if paused else "",
            generation,
        )
        fields: dict[str, Any] = {
            "phase": phase(invalid=False, paused=paused, redis_ok=True, desired=desired, polled=True),
            "replicas": int(dstatus.get("replicas") or 0),
            "readyReplicas": ready,
            "desiredReplicas": desired,
            "selector": builders.selector_string(self.name),
            "queue": {
                "pending": stats.pending,
                "inFlight": stats.in_flight,
                "scheduled": stats.scheduled,
                "deadLetter": stats.dead,
                "oldestJobAgeSeconds": round(stats.oldest_age_s, 1),
            },
        }
        if busy is not None:
            fields["busyWorkers"] = busy
        if self.state.last_scale_iso:
            fields["lastScaleTime"] = self.state.last_scale_iso
        if self.state.last_active_iso:
            fields["lastActiveTime"] = self.state.last_active_iso
        await self._write(fields, generation)

    async def _write(self, fields: dict[str, Any], generation: int | None) -> None:
        refresh_ready(self.memo, self.conditions, generation)
        snapshot = {**fields, "conditions": self.conditions.as_list()}
        if snapshot == self.state.last_status:
            return  # nothing changed: no write, no watch event
        await write_status(self.kube, self.namespace, self.name, self.conditions, fields)
        self.state.last_status = snapshot


async def run(
    *,
    body: Any,
    name: str,
    namespace: str,
    memo: MutableMapping[str, Any],
    logger: Logger,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """The daemon's body: cycles until kopf stops it (the JobQueue is deleted or the operator exits)."""
    scaler = Scaler(kube_of(memo), body, name=name, namespace=namespace, memo=memo, logger=logger)

    shutdown: asyncio.Event = memo.get("shutdown") or asyncio.Event()
    running: set[asyncio.Task[Any]] = memo.setdefault("daemons", set())
    me = asyncio.current_task()
    if me is not None:
        running.add(me)

    async def until_stopped() -> None:
        await asyncio.wait(
            {asyncio.create_task(shutdown.wait()), asyncio.ensure_future(stopped.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )

    stopping = asyncio.create_task(until_stopped())
    try:
        while not stopped and not shutdown.is_set():
            try:
                interval = await scaler.cycle()
            except APIError as err:
                logger.warning("autoscaler cycle failed (will retry): %s", err)
                interval = INVALID_RETRY_S
            probe = scaler.state.probe
            wake = probe.wake if probe is not None else asyncio.Event()
            waking = asyncio.create_task(wake.wait())
            await asyncio.wait({waking, stopping}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            wake.clear()
    finally:
        stopping.cancel()
        await scaler.close()
        running.discard(me)


async def shutdown(memo: MutableMapping[str, Any], timeout_s: float = 5.0) -> None:
    """Operator exit (kopf's cleanup activity): stop every daemon while the API session still works."""
    event = memo.get("shutdown")
    if isinstance(event, asyncio.Event):
        event.set()
    tasks = set(memo.get("daemons") or ())
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)
