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


def _overlap_ms(a: int, b: int, windows: list[tuple[int, int]]) -> int:
    return sum(max(0, min(b, end) - max(a, start)) for start, end in windows)


def judge(run: ChaosRun) -> Verdict:
    p = run.params
    v = Verdict(faults=Counter(f.kind for f in run.faults), seconds=(run.finished_ms - run.started_ms) / 1000)
    add = v.rows.append
    execs = executions(run.records)
    kills = {f.pid: f.start_ms for f in run.faults if f.kind == "kill"}
    terms = {f.pid: f.start_ms for f in run.faults if f.kind == "term"}
    stalls: dict[int, list[Fault]] = defaultdict(list)
    for f in run.faults:
        if f.kind == "stall":
            stalls[f.pid].append(f)
    down = [(f.start_ms, f.end_ms) for f in run.faults if f.kind in ("outage", "redis-restart")]

    # ---- loss and the dead-letter queue
    completions = Counter(c["id"] for c in run.completed)
    completed_at = {c["id"]: c["completed_ms"] for c in run.completed}
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
    causes: Counter[str] = Counter()
    dup_causes: Counter[str] = Counter()
    stale_accepted = []
    for job, ex in execs.items():
        for e, nxt in itertools.pairwise(ex):
            cause = _cause(e, nxt, kills, terms, stalls)
            if cause != "failure":
                causes[cause] += 1
            if cause == "unexplained" and len(v.notes) < 20:
                v.notes.append(f"unexplained re-run: {e} -> next {nxt}")
            if e.outcome == "ok":
                dup_causes[cause] += 1
        last = ex[-1]
        if completions[job] and (last.outcome != "ok" or completed_at[job] < (last.end_ms or 0)):
            stale_accepted.append(job)
    twice = [j for j, n in completions.items() if n > 1]
    n_exec = sum(len(x) for x in execs.values())
    add(Row("executions recorded", str(n_exec), "-", None))
    add(
        Row(
            "re-runs: in flight at a kill / stall / scale-down",
            f"{causes['kill']} / {causes['stall']} / {causes['scale-down']}",
            "counted",
            None,
        )
    )
    add(
        Row(
            "re-runs not explained by a kill/stall/scale-down",
            str(causes["unexplained"]),
            "0",
            causes["unexplained"] == 0,
        )
    )
    add(Row("duplicate completions: kill / stall", f"{dup_causes['kill']} / {dup_causes['stall']}", "counted", None))
    add(
        Row(
            "duplicate completions otherwise",
            str(sum(dup_causes.values()) - dup_causes["kill"] - dup_causes["stall"]),
            "0",
            sum(dup_causes.values()) == dup_causes["kill"] + dup_causes["stall"],
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
    for kind, events in (
        ("SIGKILL", [(pid, t) for pid, t in kills.items()]),
        ("stall", [(pid, f.start_ms) for pid, fs in stalls.items() for f in fs]),
    ):
        reclaim, adjusted, running_again = _reclaims(execs, events, down)
        fmt = f"p50 {percentile(adjusted, 50):.2f}s p99 {percentile(adjusted, 99):.2f}s (n={len(adjusted)})"
        ok = bool(adjusted) and percentile(adjusted, 99) <= bound if kind == "SIGKILL" else None
        if kind == "SIGKILL" and not adjusted:
            ok = not kills
        add(Row(f"reclaim after {kind} (Redis reachable)", fmt, f"p99 <= {bound:g}s", ok))
        if reclaim:
            add(
                Row(
                    f"reclaim after {kind}, wall clock",
                    f"p50 {percentile(reclaim, 50):.2f}s p99 {percentile(reclaim, 99):.2f}s",
                    "-",
                    None,
                )
            )
            add(
                Row(
                    f"{kind} -> running again",
                    f"p50 {percentile(running_again, 50):.2f}s p99 {percentile(running_again, 99):.2f}s",
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
            gone = min(kills.get(w.pid, 1 << 62), terms.get(w.pid, 1 << 62))
            stalled = any(s.start_ms <= f.end_ms + window_ms and s.end_ms >= f.start_ms for s in stalls.get(w.pid, []))
            if w.started_ms > f.start_ms or gone < f.end_ms + window_ms or stalled:
                continue
            expected += 1
            if any(f.end_ms < t <= f.end_ms + window_ms for t in starts[w.pid]):
                recovered += 1
    return recovered, expected
