"""Every Redis key name of jobqueue, built here and nowhere else.

All keys of one logical queue share the hash tag ``{queue_name}``, so every script's keys fall
in one Redis Cluster slot. Priorities are parts of a queue, not separate queues, which is what
lets one claim script pop in strict priority order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREFIX = "jobqueue"


@dataclass(frozen=True)
class QueueKeys:
    queue: str
    priorities: tuple[str, ...]
    base: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{PREFIX}:{{{self.queue}}}:")

    def pending(self, priority: str) -> str:
        """LIST of job ids waiting at one priority; LPUSH at the tail, RPOP from the head."""
        return f"{self.base}pending:{priority}"

    def pending_all(self) -> list[str]:
        return [self.pending(p) for p in self.priorities]

    @property
    def job_prefix(self) -> str:
        """Prefix of the per-job HASH ``<prefix><id>`` (same hash tag)."""
        return f"{self.base}job:"

    def job(self, job_id: str) -> str:
        return f"{self.job_prefix}{job_id}"

    @property
    def active(self) -> str:
        """ZSET job id -> lease deadline (ms): the jobs being run now."""
        return f"{self.base}active"

    @property
    def scheduled(self) -> str:
        """ZSET job id -> due time (ms): delayed jobs and retries waiting for backoff."""
        return f"{self.base}scheduled"

    @property
    def dead(self) -> str:
        """ZSET job id -> time of death (ms): the dead-letter queue."""
        return f"{self.base}dead"

    @property
    def completed(self) -> str:
        """LIST of recently completed job summaries, newest first, trimmed to completed_keep."""
        return f"{self.base}completed"

    @property
    def stats(self) -> str:
        """HASH of lifetime counters (completed, dead, reaped ...)."""
        return f"{self.base}stats"

    @property
    def seq(self) -> str:
        """STRING counter issuing lease tokens (fencing tokens) and ids for raw entries."""
        return f"{self.base}seq"

    @property
    def wake(self) -> str:
        """LIST of wake-up tokens that idle workers block on (BLPOP)."""
        return f"{self.base}wake"

    @property
    def idle(self) -> str:
        """ZSET worker id -> idle registration expiry (ms): workers that enqueue hands jobs to directly."""
        return f"{self.base}idle"

    @property
    def idle_slots(self) -> str:
        """HASH worker id -> "<free slots> <lease ms>" of each idle registration."""
        return f"{self.base}idle_slots"

    @property
    def handoff_prefix(self) -> str:
        return f"{self.base}handoff:"

    def handoff(self, worker_id: str) -> str:
        """LIST of jobs enqueue leased straight to this worker, which blocks on it while idle."""
        return f"{self.base}handoff:{worker_id}"

    @property
    def workers(self) -> str:
        """ZSET worker id -> registration expiry (ms): the live-worker registry."""
        return f"{self.base}workers"

    def worker(self, worker_id: str) -> str:
        """HASH describing one live worker (host, pid, started, concurrency)."""
        return f"{self.base}worker:{worker_id}"

    @property
    def worker_prefix(self) -> str:
        return f"{self.base}worker:"

    @property
    def rate_limit(self) -> str:
        """STRING fixed-window counter of the producer rate limit."""
        return f"{self.base}ratelimit"

    @property
    def events_channel(self) -> str:
        """Pub/sub channel announcing that an empty queue received work (the operator wakes from zero)."""
        return f"{self.base}events"
