"""The chaos run: a workload through real worker processes while faults are injected.

One code path for both sizes: tests/chaos/test_chaos.py runs ``ChaosParams.ci()`` (bounded,
short leases) and hack/chaos.py runs ``ChaosParams.long()`` (the issue's numbers) or any mix.

Topology (all on loopback):  producer ──direct──> redis-server (AOF, appendfsync always)
                             workers  ──TcpProxy──> redis-server
                             handlers ──direct──> redis-server (execution records)

Faults come in phases, each alone and then all combined: SIGKILL + replacement, SIGTERM
scale-down + replacement, connection delays / cuts / a short outage at the proxy, SIGKILL +
restart of redis-server, and a stalled worker (SIGSTOP past its lease, then SIGCONT), which is
what makes fencing observable. chaos_verdict.py turns what happened into the verdict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis_server import RedisServer
from tcp_proxy import TcpProxy

from jobqueue.api import JobSpec, Queue
from jobqueue.config import build_config
from jobqueue.keys import QueueKeys

SUPPORT_DIR = Path(__file__).resolve().parent
QUEUE = "chaos"
MAX_RETRIES = 25
"""Attempts a chaos job may lose (crashes included) before the DLQ: far more than the faults can take."""
PHASES = ("kill", "scale-down", "network", "redis-restart", "stall", "combined")


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ChaosParams:
    jobs: int = 5000
    workers: int = 4
    concurrency: int = 8
    heartbeat_ttl_s: float = 2.0
    reaper_interval_s: float = 1.0
    shutdown_timeout_s: float = 1.0
    phase_s: float = 5.0
    cycles: int = 1
    kill_every_s: float = 2.0
    poison_jobs: int = 10
    long_job_every: int = 100
    """One job in this many runs 1.25-2x the lease, so it lives only through renewals."""
    run_ms: tuple[int, int] = (20, 150)
    drain_timeout_s: float = 60.0
    seed: int = 1
    redis_args: tuple[str, ...] = ("--appendonly", "yes", "--appendfsync", "always")

    @classmethod
    def ci(cls, **over: Any) -> ChaosParams:
        return cls(**over)

    @classmethod
    def long(cls, **over: Any) -> ChaosParams:
        base: dict[str, Any] = {
            "jobs": 100_000,
            "workers": 6,
            "concurrency": 16,
            "heartbeat_ttl_s": 10.0,
            "reaper_interval_s": 5.0,
            "shutdown_timeout_s": 5.0,
            "phase_s": 60.0,
            "kill_every_s": 5.0,
            "drain_timeout_s": 300.0,
        }
        base.update(over)
        return cls(**base)

    @property
    def stall_s(self) -> float:
        return self.heartbeat_ttl_s + self.reaper_interval_s + 1.0

    @property
    def produce_s(self) -> float:
        return self.phase_s * len(PHASES) * self.cycles


@dataclass
class Fault:
    kind: str  # kill, term, stall, cut, outage, delay, redis-restart, raw
    phase: str
    start_ms: int
    end_ms: int
    pid: int = 0
    detail: str = ""


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_ms: int
    signalled: str = ""  # "", kill, term, startup-failed
    signal_ms: int = 0
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class ChaosRun:
    """Everything the verdict needs, collected after the run."""

    params: ChaosParams
    started_ms: int
    produced_ms: int
    finished_ms: int
    job_ids: list[str]
    poison_ids: list[str]
    raw_pushed: int
    faults: list[Fault]
    workers: list[WorkerProc]
    term_exit: dict[int, tuple[int | None, float]]
    records: list[dict[str, Any]]
    completed: list[dict[str, Any]]
    dead: dict[str, dict[str, str]]
    leftover: dict[str, int]
    refused: list[dict[str, Any]]
    drained: bool
    crashed: list[int]


async def retrying(op: Callable[[], Awaitable[Any]], deadline_s: float = 30.0) -> Any:
    """Run op() until Redis takes it (it restarts during the run), within a deadline."""
    end = time.monotonic() + deadline_s
    delay = 0.02
    while True:
        try:
            return await op()
        except (RedisError, OSError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


class Chaos:
    def __init__(self, params: ChaosParams, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.p = params
        self.dir = workdir
        self.log = log
        self.rng = random.Random(params.seed)
        self.keys = QueueKeys(QUEUE, ("high", "low"))
        self.redis_server = RedisServer(*params.redis_args)
        self.proxy: TcpProxy | None = None
        self.fleet: list[WorkerProc] = []
        self.faults: list[Fault] = []
        self.term_exit: dict[int, tuple[int | None, float]] = {}
        self.raw_pushed = 0
        self.phase = "start"
        self.crashed: list[int] = []
        self._bg: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ processes

    def _worker_config(self) -> Path:
        assert self.proxy is not None
        p = self.p
        cfg = {
            "queue_name": QUEUE,
            "redis": {
                "addr": self.proxy.addr,
                "dial_timeout": "1s",
                "read_timeout": "1s",
                "write_timeout": "1s",
                "max_retries": 2,
            },
            "worker": {
                "count": p.concurrency,
                "heartbeat_ttl": f"{int(p.heartbeat_ttl_s * 1000)}ms",
                "reaper_interval": f"{int(p.reaper_interval_s * 1000)}ms",
                "shutdown_timeout": f"{int(p.shutdown_timeout_s * 1000)}ms",
                "max_retries": MAX_RETRIES,
                "backoff": {"base": "50ms", "max": "200ms"},
                "handler_modules": ["chaos_jobs"],
                "completed_keep": p.jobs * 10,
            },
            "observability": {"metrics_port": 0, "log_level": "info", "log_format": "json"},
        }
        path = self.dir / "worker.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def start_worker(self) -> WorkerProc:
        n = len(self.fleet)
        log_path = self.dir / f"worker-{n:03d}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SUPPORT_DIR), os.environ.get("PYTHONPATH", "")]),
            "CHAOS_RECORD_URL": self.redis_server.url,
            "CHAOS_QUEUE": QUEUE,
        }
        for var in [k for k in env if k.startswith(("REDIS_", "WORKER_", "OBSERVABILITY_"))]:
            del env[var]  # the environment would override the chaos config
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobqueue.cli", "--role=worker", f"--config={self.config_path}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
            )
        w = WorkerProc(proc, log_path, now_ms())
        self.fleet.append(w)
        return w

    def _pick(self, started: bool = False, among: set[int] | None = None) -> WorkerProc | None:
        """A random live worker; ``started``: only one that finished starting up (it logged so);
        ``among``: only these pids (when any of them is alive)."""
        alive = [w for w in self.fleet if not w.signalled and not w.stopped and w.proc.poll() is None]
        if among:
            alive = [w for w in alive if w.pid in among] or alive
        if started:
            # A SIGTERM that lands while the process is still importing kills it with the default
            # action (exit -15, nothing claimed yet); scale-down is about the drain of a running worker.
            alive = [w for w in alive if b'"worker started"' in w.log_path.read_bytes()]
        return self.rng.choice(alive) if alive else None

    async def kill_busy_worker(self, redis: Redis) -> None:
        """SIGKILL a worker that holds leased jobs, so every kill of the kill-only phase has
        something to reclaim (a kill of an idle worker measures nothing)."""
        busy: set[int] = set()
        try:
            for job_id in await redis.zrange(self.keys.active, 0, 50):
                wid = await redis.hget(self.keys.job(_s(job_id)), "worker")
                if wid:
                    busy.add(int(_s(wid).rsplit("-", 2)[-2]))
        except (RedisError, ValueError, IndexError):
            pass
        self.kill_worker(among=busy)

    def kill_worker(self, among: set[int] | None = None) -> None:
        w = self._pick(started=True, among=among) or self._pick()
        if w is None:
            return
        w.signalled, w.signal_ms = "kill", now_ms()
        w.proc.send_signal(signal.SIGKILL)
        self.faults.append(Fault("kill", self.phase, w.signal_ms, w.signal_ms, w.pid))
        self.start_worker()

    def term_worker(self) -> None:
        w = self._pick(started=True)
        if w is None:
            return
        w.signalled, w.signal_ms = "term", now_ms()
        w.proc.send_signal(signal.SIGTERM)
        self.faults.append(Fault("term", self.phase, w.signal_ms, w.signal_ms, w.pid))
        self.start_worker()

    async def stall_worker(self) -> None:
        w = self._pick()
        if w is None:
            return
        w.stopped = True
        start = now_ms()
        w.proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(self.p.stall_s)
        finally:
            w.proc.send_signal(signal.SIGCONT)
            w.stopped = False
            self.faults.append(Fault("stall", self.phase, start, now_ms(), w.pid))

    async def restart_redis(self) -> None:
        start = now_ms()
        await asyncio.to_thread(self.redis_server.kill)
        self._close_pipes()
        await asyncio.to_thread(self.redis_server.start)
        self.faults.append(Fault("redis-restart", self.phase, start, now_ms(), detail="SIGKILL, AOF reload"))

    def cut(self) -> None:
        assert self.proxy is not None
        t = now_ms()
        n = self.proxy.cut()
        self.faults.append(Fault("cut", self.phase, t, t, detail=f"{n} connections"))

    async def outage(self, seconds: float) -> None:
        assert self.proxy is not None
        start = now_ms()
        self.proxy.outage(True)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.proxy.outage(False)
            self.faults.append(Fault("outage", self.phase, start, now_ms()))

    async def delay(self, seconds: float, latency_s: float) -> None:
        assert self.proxy is not None
        start = now_ms()
        self.proxy.set_delay(latency_s)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.proxy.set_delay(0.0)
            self.faults.append(Fault("delay", self.phase, start, now_ms(), detail=f"{latency_s * 1000:.0f}ms"))

    async def push_raw(self, redis: Redis) -> None:
        bad = [b"not json at all", b'{"id": 5, "retries": -1}', b'{"type": "no-such-handler"}']
        payload = bad[self.raw_pushed % len(bad)]
        await retrying(lambda: redis.lpush(self.keys.pending("low"), payload))
        self.raw_pushed += 1
        t = now_ms()
        self.faults.append(Fault("raw", self.phase, t, t, detail=payload.decode()))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # ------------------------------------------------------------------ schedule

    def _phase_actions(self, phase: str, redis: Redis) -> list[tuple[float, Callable[[], Any]]]:
        """(offset in s, action) for one phase; actions returning awaitables run in the background."""
        P = self.p.phase_s
        if phase == "kill":
            steps = max(int(P / self.p.kill_every_s), 1)
            return [(i * self.p.kill_every_s + 0.2, lambda: self.kill_busy_worker(redis)) for i in range(steps)]
        if phase == "scale-down":
            return [(0.1 * P, self.term_worker), (0.55 * P, self.term_worker)]
        if phase == "network":
            return [
                (0.0, lambda: self.delay(0.3 * P, self.rng.uniform(0.02, 0.08))),
                (0.35 * P, self.cut),
                (0.45 * P, lambda: self.push_raw(redis)),
                (0.5 * P, lambda: self.outage(0.4)),
                (0.7 * P, self.cut),
                (0.8 * P, lambda: self.push_raw(redis)),
                (0.9 * P, self.cut),
            ]
        if phase == "redis-restart":
            return [(0.3 * P, self.restart_redis)]
        if phase == "stall":
            return [(0.05 * P, self.stall_worker)]
        return [  # combined
            (0.02 * P, self.stall_worker),
            (0.1 * P, lambda: self.delay(0.5 * P, self.rng.uniform(0.02, 0.06))),
            (0.2 * P, self.kill_worker),
            (0.3 * P, self.cut),
            (0.4 * P, self.restart_redis),
            (0.5 * P, self.term_worker),
            (0.6 * P, lambda: self.push_raw(redis)),
            (0.7 * P, self.kill_worker),
            (0.8 * P, lambda: self.outage(0.3)),
            (0.9 * P, self.kill_worker),
        ]

    async def _inject(self, redis: Redis) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for cycle in range(self.p.cycles):
            for i, phase in enumerate(PHASES):
                phase_t0 = t0 + (cycle * len(PHASES) + i) * self.p.phase_s
                for offset, action in self._phase_actions(phase, redis):
                    await asyncio.sleep(max(phase_t0 + offset - loop.time(), 0))
                    self.phase = phase
                    result = action()
                    if asyncio.iscoroutine(result):
                        self._spawn(result)

    async def _produce(self, specs: list[JobSpec]) -> None:
        loop = asyncio.get_running_loop()
        tick = 0.1
        ticks = max(int(self.p.produce_s / tick), 1)
        per_tick = -(-len(specs) // ticks)
        # The producer writes each job's retry budget into its record, and the reaper goes by that
        # one after a crash: it must be the workers' (a long job can be killed several times).
        direct = build_config(
            {"queue_name": QUEUE, "redis": {"url": self.redis_server.url}, "worker": {"max_retries": MAX_RETRIES}}
        )
        async with Queue(direct) as queue:
            t0 = loop.time()
            for i in range(0, len(specs), per_tick):
                await asyncio.sleep(max(t0 + (i // per_tick) * tick - loop.time(), 0))
                await retrying(self._enqueuer(queue, specs[i : i + per_tick]))

    @staticmethod
    def _enqueuer(queue: Queue, chunk: list[JobSpec]) -> Callable[[], Awaitable[list[str]]]:
        """Enqueue with caller-given ids: re-sending a chunk after an error is idempotent."""
        return lambda: queue.enqueue_many(chunk)

    def _workload(self) -> tuple[list[JobSpec], list[str], list[str]]:
        p = self.p
        lo, hi = p.run_ms
        lease_ms = int(p.heartbeat_ttl_s * 1000)
        specs: list[JobSpec] = []
        ids: list[str] = []
        for i in range(p.jobs):
            long_job = p.long_job_every and i % p.long_job_every == p.long_job_every // 2
            run = self.rng.randint(int(lease_ms * 1.25), lease_ms * 2) if long_job else self.rng.randint(lo, hi)
            prio = "high" if self.rng.random() < 0.2 else "low"
            specs.append(JobSpec("chaos", {"run_ms": run}, priority=prio, job_id=f"j{i:07d}"))
            ids.append(f"j{i:07d}")
        poison = [f"poison{i:04d}" for i in range(p.poison_jobs)]
        for n, pid in enumerate(poison):
            at = (n + 1) * len(specs) // (len(poison) + 1)
            specs.insert(at, JobSpec("poison", None, job_id=pid, max_retries=1))
        return specs, ids, poison

    # ------------------------------------------------------------------ the run

    async def run(self) -> ChaosRun:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis_server.start()
        self.proxy = TcpProxy(self.redis_server.port).start()
        redis = Redis.from_url(self.redis_server.url, decode_responses=False)
        try:
            run = await self._run(redis)
            self._save(run)
            return run
        finally:
            for w in self.fleet:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGCONT)
                    w.proc.kill()
                    w.proc.wait()
            await redis.aclose()
            self.proxy.stop()
            self.redis_server.cleanup()
            self._close_pipes()

    def _save(self, run: ChaosRun) -> None:
        """run.json in the workdir: faults, executions and outcomes, for a post-mortem."""
        data = {
            "params": dataclasses.asdict(run.params),
            "faults": [dataclasses.asdict(f) for f in run.faults],
            "workers": [
                {
                    "pid": w.pid,
                    "log": w.log_path.name,
                    "started_ms": w.started_ms,
                    "signalled": w.signalled,
                    "signal_ms": w.signal_ms,
                }
                for w in run.workers
            ],
            "records": run.records,
            "completed": [{k: c.get(k) for k in ("id", "attempts", "completed_ms")} for c in run.completed],
            "dead": run.dead,
            "refused": run.refused,
        }
        (self.dir / "run.json").write_text(json.dumps(data))

    def _close_pipes(self) -> None:
        """RedisServer keeps the stderr pipe of each redis-server it started; close it when it is gone."""
        proc = self.redis_server.proc
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()

    async def _run(self, redis: Redis) -> ChaosRun:
        p = self.p
        specs, ids, poison = self._workload()
        self.config_path = self._worker_config()
        for _ in range(p.workers):
            self.start_worker()
        deadline = time.monotonic() + 60
        while not all(b'"worker started"' in w.log_path.read_bytes() for w in self.fleet):
            assert time.monotonic() < deadline, "workers did not start within 60s"
            await asyncio.sleep(0.05)
        started = now_ms()
        self.log(
            f"chaos: {len(specs)} jobs over {p.produce_s:.0f}s, {p.workers} workers x {p.concurrency}, "
            f"lease {p.heartbeat_ttl_s}s, reaper {p.reaper_interval_s}s, seed {p.seed}, in {self.dir}"
        )
        monitor = asyncio.create_task(self._monitor())
        try:
            await asyncio.gather(self._produce(specs), self._inject(redis))
            await asyncio.gather(*list(self._bg))
            produced = now_ms()
            self.phase = "drain"
            drained = await self._wait_drained(redis, len(specs) + self.raw_pushed)
            await self._stop_fleet()
        finally:
            monitor.cancel()
        finished = now_ms()
        return ChaosRun(
            params=p,
            started_ms=started,
            produced_ms=produced,
            finished_ms=finished,
            job_ids=ids,
            poison_ids=poison,
            raw_pushed=self.raw_pushed,
            faults=self.faults,
            workers=self.fleet,
            term_exit=self.term_exit,
            records=await self._records(redis),
            completed=[json.loads(x) for x in await redis.lrange(self.keys.completed, 0, -1)],
            dead=await self._dead(redis),
            leftover=await self._leftover(redis),
            refused=self._refused(),
            drained=drained,
            crashed=self.crashed,
        )

    async def _wait_drained(self, redis: Redis, expected: int) -> bool:
        k = self.keys
        deadline = time.monotonic() + self.p.drain_timeout_s
        while time.monotonic() < deadline:
            self._reap_exits()
            left = await self._leftover(redis)
            done = await retrying(lambda: redis.llen(k.completed)) + await retrying(lambda: redis.zcard(k.dead))
            if done >= expected and not any(left.values()):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _monitor(self) -> None:
        """Note when each SIGTERMed worker exits (the drain must finish within shutdown_timeout),
        and restart, as a kubelet would, a worker that refused to start because Redis was down."""
        while True:
            self._reap_exits()
            for w in list(self.fleet):
                if w.signalled or w.proc.poll() is None or w.proc.returncode != 1:
                    continue
                if b"cannot reach Redis" in w.log_path.read_bytes():  # fail-fast start-up, by design
                    w.signalled, w.signal_ms = "startup-failed", now_ms()
                    self.faults.append(Fault("startup-failed", self.phase, w.signal_ms, w.signal_ms, w.pid))
                    self.start_worker()
            await asyncio.sleep(0.05)

    def _reap_exits(self) -> None:
        for w in self.fleet:
            if w.signalled == "term" and w.pid not in self.term_exit and w.proc.poll() is not None:
                self.term_exit[w.pid] = (w.proc.returncode, (now_ms() - w.signal_ms) / 1000)

    async def _stop_fleet(self) -> None:
        """Scale to zero the way an operator would: SIGTERM every live worker, expect exit 0."""
        self.crashed = [w.pid for w in self.fleet if not w.signalled and w.proc.poll() is not None]
        for w in self.fleet:
            if w.pid in self.crashed:
                tail = w.log_path.read_text(errors="replace").splitlines()[-15:]
                self.log(f"worker {w.pid} ({w.log_path.name}) died unasked, status {w.proc.returncode}:")
                for line in tail:
                    self.log(f"  {line[:600]}")
        live = [w for w in self.fleet if not w.signalled and w.proc.poll() is None]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a replacement still importing would die of SIGTERM's default action
            if all(b'"worker started"' in w.log_path.read_bytes() for w in live):
                break
            await asyncio.sleep(0.05)
        for w in self.fleet:
            if not w.signalled and w.proc.poll() is None:
                w.signalled, w.signal_ms = "term", now_ms()
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.p.shutdown_timeout_s + 15
        while time.monotonic() < deadline and any(
            w.signalled == "term" and w.pid not in self.term_exit for w in self.fleet
        ):
            self._reap_exits()
            await asyncio.sleep(0.05)
        for w in self.fleet:
            if w.signalled == "term" and w.pid not in self.term_exit:
                self.term_exit[w.pid] = (None, (now_ms() - w.signal_ms) / 1000)

    async def _leftover(self, redis: Redis) -> dict[str, int]:
        k = self.keys

        async def read() -> dict[str, int]:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.llen(k.pending("high"))
                pipe.llen(k.pending("low"))
                pipe.zcard(k.active)
                pipe.zcard(k.scheduled)
                high, low, active, scheduled = await pipe.execute()
            return {"pending": int(high) + int(low), "active": int(active), "scheduled": int(scheduled)}

        result: dict[str, int] = await retrying(read)
        return result

    async def _records(self, redis: Redis) -> list[dict[str, Any]]:
        raw = await redis.lrange("chaos:exec", 0, -1)
        return [json.loads(x) for x in raw]

    async def _dead(self, redis: Redis) -> dict[str, dict[str, str]]:
        ids = [_s(x) for x in await redis.zrange(self.keys.dead, 0, -1)]
        out = {}
        for job_id in ids:
            h = await redis.hgetall(self.keys.job(job_id))
            out[job_id] = {_s(k): _s(v) for k, v in h.items() if k != b"data"}
        return out

    def _refused(self) -> list[dict[str, Any]]:
        """Results the runtime refused because the lease had been taken over (from the JSON logs)."""
        out = []
        for w in self.fleet:
            for line in w.log_path.read_text(errors="replace").splitlines():
                if "result refused" not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                out.append(
                    {
                        "pid": w.pid,
                        "job_id": rec.get("job_id"),
                        "attempt": rec.get("attempt"),
                        "outcome": rec.get("outcome"),
                        "t": rec.get("time"),
                    }
                )
        return out
