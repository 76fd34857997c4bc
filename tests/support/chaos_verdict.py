"""The verdict of a chaos run: what was lost, duplicated, fenced and how fast jobs came back.

Executions are read from the handlers' own records (chaos_jobs.py), ordered per job by lease
token (the fencing token is issued in claim order). Every execution that was followed by
another one of the same job is given a cause:

- ``kill``: its worker was SIGKILLed after it started (the job was in flight at the kill);
- ``stall``: its worker was SIGSTOPped past the lease while it ran (a frozen process);
- ``scale-down``: its worker was SIGTERMed and the unfinished job was handed back;
- ``failure``: the handler failed (designated poison jobs only);
- ``unexplained``: anything else. Must be zero.

"No ack accepted after a lease was taken over" is checked from the outside: a job's one entry
in the completed list must come from its latest lease, i.e. the latest execution ended "ok" and
the completion time is not before that end (an ack accepted from an older lease would complete
the job before its latest execution finished, or twice).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from chaos_harness import ChaosRun, Fault


@dataclass
class Execution:
    job: str
    pid: int
    attempt: int
    token: int
    start_ms: int
    ready_ms: int
    error: str
    claim_ms: int
    end_ms: int | None = None
    outcome: str | None = None


@dataclass
class Row:
    check: str
    value: str
    required: str
    ok: bool | None  # None: reported, not asserted


@dataclass
class Verdict:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.ok is False]

    def table(self) -> str:
        w1 = max(len(r.check) for r in self.rows)
        w2 = max(len(r.value) for r in self.rows)
        w3 = max(len(r.required) for r in self.rows)
        line = f"+-{'-' * w1}-+-{'-' * w2}-+-{'-' * w3}-+------+"
        out = [line, f"| {'check':<{w1}} | {'value':<{w2}} | {'required':<{w3}} | pass |", line]
        for r in self.rows:
            mark = {True: "yes", False: "NO", None: "-"}[r.ok]
            out.append(f"| {r.check:<{w1}} | {r.value:<{w2}} | {r.required:<{w3}} | {mark:<4} |")
        out.append(line)
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        out.append(f"faults injected: {faults}; run took {self.seconds:.1f}s")
        return "\n".join(out + self.notes)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(math.ceil(q / 100 * len(s)) - 1, 0)]


def executions(records: list[dict[str, Any]]) -> dict[str, list[Execution]]:
    by_token: dict[tuple[str, str], Execution] = {}
    ends: list[dict[str, Any]] = []
    for r in records:
        if r["s"] == 1:
            by_token[(r["j"], r["k"])] = Execution(
                r["j"], r["p"], r["a"], int(r["k"] or 0), r["t"], r["r"], r.get("e", ""), r.get("c") or r["t"]
            )
        else:
            ends.append(r)
    for r in ends:
        e = by_token.get((r["j"], r["k"]))
        if e is not None:
            e.end_ms, e.outcome = r["t"], r["o"]
    out: dict[str, list[Execution]] = defaultdict(list)
    for e in by_token.values():
        out[e.job].append(e)
    for execs in out.values():
        execs.sort(key=lambda e: e.token)
    return out


def split_orphans(execs: dict[str, list[Execution]]) -> list[Execution]:
    """Remove executions whose handler started after the job's record was already gone (no token:
    a frozen worker woke up after its lease was taken over and the job completed elsewhere)."""
    orphans = []
    for job, ex in execs.items():
        orphans += [e for e in ex if e.token == 0]
        execs[job] = [e for e in ex if e.token != 0]
    return orphans


def _overlap_ms(a: int, b: int, windows: list[tuple[int, int]]) -> int:
    return sum(max(0, min(b, end) - max(a, start)) for start, end in windows)


def judge(run: ChaosRun) -> Verdict:
    p = run.params
    v = Verdict(faults=Counter(f.kind for f in run.faults), seconds=(run.finished_ms - run.started_ms) / 1000)
    add = v.rows.append
    execs = executions(run.records)
    orphans = split_orphans(execs)
    kills = {f.pid: f.start_ms for f in run.faults if f.kind == "kill"}
    terms = {f.pid: f.start_ms for f in run.faults if f.kind == "term"}
    stalls: dict[int, list[Fault]] = defaultdict(list)
    for f in run.faults:
        if f.kind == "stall":
            stalls[f.pid].append(f)
    down = [(f.start_ms, f.end_ms) for f in run.faults if f.kind in ("outage", "redis-restart")]

    # ---- loss and the dead-letter queue
    completions = Counter(c["id"] for c in run.completed)
    completed_at: dict[str, int] = {}
    for c in run.completed:
        completed_at[c["id"]] = max(completed_at.get(c["id"], 0), c["completed_ms"])
    lost = [j for j in run.job_ids if completions[j] == 0]
    add(Row("drained within the deadline", str(run.drained), "True", run.drained))
    add(
        Row(
            "jobs enqueued (chaos + poison)",
            f"{len(run.job_ids)} + {len(run.poison_ids)}",
            f">= {p.jobs}",
            len(run.job_ids) >= p.jobs,
        )
    )
    add(Row("completed", str(sum(1 for j in run.job_ids if completions[j])), str(len(run.job_ids)), not lost))
    add(Row("lost jobs", str(len(lost)), "0", not lost))
    poison_ok = sum(1 for j in run.poison_ids if run.dead.get(j, {}).get("reason") == "max retries exceeded")
    add(
        Row(
            "poison jobs in DLQ with reason",
            f"{poison_ok}/{len(run.poison_ids)}",
            "all",
            poison_ok == len(run.poison_ids),
        )
    )
    raw_dead = {k: d for k, d in run.dead.items() if k.startswith("raw-")}
    raw_ok = sum(1 for d in raw_dead.values() if d.get("reason") in ("malformed payload", "no handler"))
    add(
        Row(
            "raw malformed entries in DLQ with reason",
            f"{raw_ok}/{run.raw_pushed}",
            "all",
            raw_ok == run.raw_pushed == len(raw_dead),
        )
    )
    unexpected = [k for k in run.dead if k not in raw_dead and k not in set(run.poison_ids)]
    add(Row("unexpected DLQ entries", str(len(unexpected)), "0", not unexpected))
    left = ", ".join(f"{k} {n}" for k, n in run.leftover.items())
    add(Row("queue left (pending, active, scheduled)", left, "all 0", not any(run.leftover.values())))

    # ---- re-runs, duplicates and fencing
    restarts_win = [(f.start_ms - 2000, f.end_ms) for f in run.faults if f.kind == "redis-restart"]
    causes: Counter[str] = Counter()
    dup_causes: Counter[str] = Counter()
    stale_accepted = []
    copies: dict[str, int] = {}
    for job, ex in execs.items():
        for e, nxt in itertools.pairwise(ex):
            cause = _cause(e, nxt, kills, terms, stalls)
            if cause == "re-enqueued" and not any(a <= ex[0].ready_ms <= b for a, b in restarts_win):
                cause = "unexplained"  # only a Redis crash during the enqueue explains a second copy
            if cause != "failure":
                causes[cause] += 1
            if cause == "unexplained" and len(v.notes) < 20:
                v.notes.append(f"unexplained re-run: {e} -> next {nxt}")
            if e.outcome == "ok":
                dup_causes[cause] += 1
        last = ex[-1]
        if completions[job] and (last.outcome != "ok" or completed_at[job] < (last.end_ms or 0)):
            stale_accepted.append(job)
        copies[job] = 1 + sum(
            1 for e, nxt in itertools.pairwise(ex) if _cause(e, nxt, kills, terms, stalls) == "re-enqueued"
        )
    twice = [j for j, n in completions.items() if n > copies.get(j, 1)]
    for e in orphans:
        frozen = any(f.start_ms <= e.start_ms <= f.end_ms + 5000 for f in stalls.get(e.pid, []))
        causes["stall" if frozen else "unexplained"] += 1
        if e.outcome == "ok":
            dup_causes["stall" if frozen else "unexplained"] += 1
        if not frozen and len(v.notes) < 20:
            v.notes.append(f"unexplained execution without a lease record: {e}")
    n_exec = sum(len(x) for x in execs.values()) + len(orphans)
    add(Row("executions recorded", str(n_exec), "-", None))
    add(
        Row(
            "re-runs: in flight at a kill / stall / scale-down",
            f"{causes['kill']} / {causes['stall']} / {causes['scale-down']}",
            "counted",
            None,
        )
    )
    add(Row("jobs enqueued twice: producer retry across a Redis crash", str(causes["re-enqueued"]), "counted", None))
    add(
        Row(
            "re-runs not explained by a kill/stall/scale-down",
            str(causes["unexplained"]),
            "0",
            causes["unexplained"] == 0,
        )
    )
    explained = dup_causes["kill"] + dup_causes["stall"] + dup_causes["re-enqueued"]
    add(
        Row(
            "duplicate completions: kill / stall / re-enqueue",
            f"{dup_causes['kill']} / {dup_causes['stall']} / {dup_causes['re-enqueued']}",
            "counted",
            None,
        )
    )
    add(
        Row(
            "duplicate completions otherwise",
            str(sum(dup_causes.values()) - explained),
            "0",
            sum(dup_causes.values()) == explained,
        )
    )
    add(Row("jobs completed more than once", str(len(twice)), "0", not twice))
    add(Row("acks accepted after a lease was taken over", str(len(stale_accepted)), "0", not stale_accepted))
    taken_over = sum(
        1
        for ex in execs.values()
        for e, nxt in itertools.pairwise(ex)
        if _cause(e, nxt, kills, terms, stalls) == "stall" and e.outcome == "ok"
    )
    add(
        Row(
            "stale results refused (fencing exercised)",
            str(len(run.refused)),
            ">= 1" if taken_over else "-",
            len(run.refused) >= 1 if taken_over else None,
        )
    )

    # ---- reclaim times
    bound = p.heartbeat_ttl_s + p.reaper_interval_s
    alone = {f.pid for f in run.faults if f.kind == "kill" and f.phase == "kill"}
    for kind, events in (
        ("SIGKILL alone", [(pid, t) for pid, t in kills.items() if pid in alone]),
        ("SIGKILL, all phases", list(kills.items())),
        ("stall", [(pid, f.start_ms) for pid, fs in stalls.items() for f in fs]),
    ):
        reclaim, adjusted, running_again = _reclaims(execs, events, down)
        p50, p99 = percentile(adjusted, 50), percentile(adjusted, 99)
        if kind == "SIGKILL alone":
            # The bound, asserted where kills are the only fault: lease (TTL) + one reaper interval.
            ok: bool | None = bool(adjusted) and p50 <= bound and p99 <= bound if alone else None
            add(
                Row(
                    f"reclaim after {kind}",
                    f"p50 {p50:.2f}s p99 {p99:.2f}s (n={len(adjusted)})",
                    f"p50, p99 <= {bound:g}s",
                    ok,
                )
            )
        else:
            add(
                Row(
                    f"reclaim after {kind} (Redis up)",
                    f"p50 {p50:.2f}s p99 {p99:.2f}s (n={len(adjusted)})",
                    "reported",
                    None,
                )
            )
        if reclaim:
            add(
                Row(
                    f"  {kind}: wall clock / running again, p99",
                    f"{percentile(reclaim, 99):.2f}s / {percentile(running_again, 99):.2f}s",
                    "-",
                    None,
                )
            )

    restarts = [(f.end_ms - f.start_ms) / 1000 for f in run.faults if f.kind == "redis-restart"]
    if restarts:
        add(Row("redis-server restart downtime (max)", f"{max(restarts):.2f}s", "-", None))

    # ---- processes
    termed = [(pid, run.term_exit.get(pid)) for pid in terms]
    clean = [pid for pid, ex in termed if ex and ex[0] == 0 and ex[1] <= p.shutdown_timeout_s + 5]
    bad = ", ".join(f"pid {pid}: {ex}" for pid, ex in termed if pid not in clean)
    add(
        Row(
            "scale-down SIGTERM: exit 0 in time",
            f"{len(clean)}/{len(termed)}" + (f" ({bad})" if bad else ""),
            f"all, <= {p.shutdown_timeout_s + 5:g}s",
            len(clean) == len(termed),
        )
    )
    final = [ex for pid, ex in run.term_exit.items() if pid not in terms]
    final_ok = sum(1 for ex in final if ex[0] == 0)
    add(Row("final SIGTERM of every worker: exit 0", f"{final_ok}/{len(final)}", "all", final_ok == len(final)))
    add(Row("workers that died unasked", str(len(run.crashed)), "0", not run.crashed))
    failed_start = sum(1 for f in run.faults if f.kind == "startup-failed")
    add(Row("replacements refused to start, Redis down (exit 1)", str(failed_start), "restarted", None))
    recovered, expected = _recovery(run, execs, kills, terms, stalls)
    add(Row("workers recovered after Redis came back", f"{recovered}/{expected}", "all", recovered == expected))
    return v


def _cause(
    e: Execution, nxt: Execution, kills: dict[int, int], terms: dict[int, int], stalls: dict[int, list[Fault]]
) -> str:
    """Why execution e was followed by nxt. The window that matters runs from e's claim to the
    moment the job became ready again (nxt.ready_ms): a kill or stall of e's worker inside it is
    why its lease lapsed (its result, even if the handler had finished, was not yet recorded)."""
    if e.outcome == "fail":
        return "failure"
    if e.outcome == "ok" and nxt.attempt == 1 and not nxt.error and nxt.claim_ms > (e.end_ms or 0):
        # A fresh job with the same id after the first one completed: the producer's enqueue was
        # re-sent after a Redis crash lost its reply (ids are idempotent only while the job exists).
        return "re-enqueued"
    until = max(nxt.ready_ms, e.claim_ms)
    if e.pid in kills and e.claim_ms <= kills[e.pid] <= until:
        return "kill"
    for f in stalls.get(e.pid, []):
        if f.start_ms <= until and f.end_ms >= e.claim_ms:
            return "stall"
    if e.pid in terms and e.claim_ms <= terms[e.pid] and e.outcome is None:
        return "scale-down"
    return "unexplained"


def _reclaims(
    execs: dict[str, list[Execution]], events: list[tuple[int, int]], down: list[tuple[int, int]]
) -> tuple[list[float], list[float], list[float]]:
    """For each job in flight on a killed/stalled worker: (fault -> requeued by the reaper) and
    (fault -> running again elsewhere), in seconds; "adjusted" leaves out time Redis was down."""
    at = dict(events)
    reclaim: list[float] = []
    adjusted: list[float] = []
    again: list[float] = []
    for ex in execs.values():
        for e, nxt in itertools.pairwise(ex):
            t = at.get(e.pid)
            if t is None or e.claim_ms > t or not nxt.error.startswith("lease expired") or nxt.ready_ms < t:
                continue
            reclaim.append((nxt.ready_ms - t) / 1000)
            adjusted.append((nxt.ready_ms - t - _overlap_ms(t, nxt.ready_ms, down)) / 1000)
            again.append((nxt.start_ms - t) / 1000)
    return reclaim, adjusted, again


def _recovery(
    run: ChaosRun,
    execs: dict[str, list[Execution]],
    kills: dict[int, int],
    terms: dict[int, int],
    stalls: dict[int, list[Fault]],
) -> tuple[int, int]:
    """Workers alive across a Redis restart or outage that ran a job afterwards, of those that should."""
    starts: dict[int, list[int]] = defaultdict(list)
    for ex in execs.values():
        for e in ex:
            starts[e.pid].append(e.start_ms)
    window_ms = 10_000
    recovered = expected = 0
    for f in run.faults:
        if f.kind not in ("redis-restart", "outage"):
            continue
        for w in run.workers:
            failed = w.signal_ms if w.signalled == "startup-failed" else 1 << 62
            gone = min(kills.get(w.pid, 1 << 62), terms.get(w.pid, 1 << 62), failed)
            stalled = any(s.start_ms <= f.end_ms + window_ms and s.end_ms >= f.start_ms for s in stalls.get(w.pid, []))
            if w.started_ms > f.start_ms or gone < f.end_ms + window_ms or stalled:
                continue
            expected += 1
            if any(f.end_ms < t <= f.end_ms + window_ms for t in starts[w.pid]):
                recovered += 1
    return recovered, expected
