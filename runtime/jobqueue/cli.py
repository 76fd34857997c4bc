"""``job-queue-system`` / ``jobqueue``: one command, several roles, the seed's flags.

Exit status: 0 success, 1 runtime failure, 2 bad usage or invalid configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from jobqueue import __version__
from jobqueue.config import Config, load
from jobqueue.errors import ConfigError, JobQueueError
from jobqueue.log import configure_logging

log = logging.getLogger("jobqueue.cli")

ROLES = ("producer", "worker", "all", "admin", "operator")
ADMIN_CMDS = ("stats", "peek", "purge-dlq", "requeue-dlq", "inspect", "workers", "enqueue", "bench", "config")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="job-queue-system",
        description="jobqueue: a reliable Redis job queue (producer, worker, all-in-one, admin, operator).",
    )
    p.add_argument("--role", choices=ROLES, help="what this process does")
    p.add_argument("--config", default="config/config.yaml", help="YAML config (missing file = defaults)")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    admin = p.add_argument_group("admin (--role=admin)")
    admin.add_argument("--admin-cmd", choices=ADMIN_CMDS, help="admin command")
    admin.add_argument("--queue", help="priority name, or dlq / scheduled / active / completed (peek, enqueue)")
    admin.add_argument("--n", type=int, help="how many jobs (peek: default 10; requeue-dlq: default all)")
    admin.add_argument("--id", help="one job id (inspect, requeue-dlq, purge-dlq, enqueue)")
    admin.add_argument("--yes", action="store_true", help="confirm a destructive command")
    admin.add_argument("--payload", help="job payload as JSON (enqueue)")
    admin.add_argument("--type", default="", help="job type, i.e. registered handler name (enqueue, bench)")
    admin.add_argument("--delay", help="run the job after this long, e.g. 10s or 1m30s (enqueue)")
    admin.add_argument(
        "--output", choices=("json", "table"), help="result format (default: table on a terminal, else json)"
    )
    admin.add_argument("--bench-count", type=int, default=1000, help="jobs to send (bench; default 1000)")
    admin.add_argument("--bench-rate", type=float, default=0, help="jobs per second, 0 = at once (bench; default 0)")
    admin.add_argument("--bench-priority", help="priority of the jobs (bench; default producer.default_priority)")
    admin.add_argument("--bench-timeout", default="60s", help="longest wait for completion (bench; default 60s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args, rest = p.parse_known_args(args_list)
    if args.version:
        print(f"job-queue-system {__version__}")
        return 0
    if args.role is None:
        p.error("--role is required (one of: " + ", ".join(ROLES) + ")")
    if args.role == "operator":
        from jobqueue_operator.run import main as operator_main  # type: ignore[import-not-found,unused-ignore]

        return int(operator_main(rest))
    if rest:
        p.error("unrecognized arguments: " + " ".join(rest))
    try:
        loaded = load(args.config)
    except ConfigError as err:
        print(f"job-queue-system: invalid configuration{' in ' + err.source if err.source else ''}:", file=sys.stderr)
        for line in err.problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    cfg = loaded.config
    if args.role == "admin":
        configure_logging(
            cfg.observability.log_level,
            "console" if cfg.observability.log_format == "auto" else cfg.observability.log_format,
        )
        if args.admin_cmd is None:
            p.error("--role=admin needs --admin-cmd (one of: " + ", ".join(ADMIN_CMDS) + ")")
        return asyncio.run(_admin(cfg, args))
    configure_logging(cfg.observability.log_level, cfg.observability.log_format, role=args.role)
    if loaded.source is None:
        log.info("config file not found; using defaults and environment", extra={"path": args.config})
    if loaded.ignored_keys:
        log.info("config keys ignored (not used by this design)", extra={"keys": loaded.ignored_keys})
    from jobqueue.roles.supervisor import Supervisor

    return asyncio.run(Supervisor(cfg, args.role).run())


async def _admin(cfg: Config, args: argparse.Namespace) -> int:
    """Run one admin command; 0 done, 1 failed (Redis, missing job, incomplete bench), 2 bad usage."""
    from redis.exceptions import RedisError

    from jobqueue.api import Queue
    from jobqueue.durations import parse_duration
    from jobqueue.redis_conn import check, make_client
    from jobqueue.roles import admin, bench
    from jobqueue.roles.admin_render import render

    if args.admin_cmd == "config":  # no Redis needed
        return _print(args, "config", cfg.redacted())
    redis = make_client(cfg.redis)
    queue = Queue(cfg, redis=redis)
    broker = queue.broker
    result: Any
    try:
        cmd = args.admin_cmd
        if cmd in ("peek", "inspect") and not (args.queue if cmd == "peek" else args.id):
            need = "--queue (a priority name, dlq, scheduled, active or completed)" if cmd == "peek" else "--id"
            raise admin.UsageError(f"{cmd} needs {need}")
        if cmd == "bench":
            if args.bench_count < 1 or args.bench_rate < 0:
                raise admin.UsageError("--bench-count must be at least 1 and --bench-rate at least 0")
            try:
                timeout_s = parse_duration(args.bench_timeout).total_seconds()
            except ValueError as err:
                raise admin.UsageError(f"--bench-timeout: {err}") from None
            priority = args.bench_priority or cfg.producer.default_priority
            if priority not in cfg.worker.priorities:
                raise admin.UsageError(f"--bench-priority {priority!r} is not one of {cfg.worker.priorities}")
        await check(redis, cfg.redis)
        if cmd == "stats":
            result = await admin.stats(broker)
        elif cmd == "peek":
            result = await admin.peek(broker, args.queue, 10 if args.n is None else args.n)
        elif cmd == "purge-dlq":
            result = await admin.purge_dlq(broker, args.yes, args.id)
        elif cmd == "requeue-dlq":
            result = await admin.requeue_dlq(broker, args.yes, args.id, args.n)
        elif cmd == "inspect":
            result = await admin.inspect(broker, args.id)
        elif cmd == "workers":
            result = await admin.workers(broker)
        elif cmd == "enqueue":
            result = await admin.enqueue(
                queue, args.queue, args.payload, delay=args.delay, job_id=args.id, job_type=args.type
            )
        else:
            result = await bench.run(
                queue, args.bench_count, args.bench_rate, priority, timeout_s=timeout_s, job_type=args.type
            )
            _print(args, cmd, result)
            return 0 if result["ok"] else 1
    except admin.UsageError as err:
        print(f"job-queue-system: {err}", file=sys.stderr)
        return 2
    except (JobQueueError, RedisError, OSError) as err:
        print(f"job-queue-system: {err}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    return _print(args, args.admin_cmd, result, render)


def _print(args: argparse.Namespace, cmd: str, result: Any, render: Any = None) -> int:
    as_table = args.output == "table" or (args.output is None and sys.stdout.isatty())
    if as_table:
        if render is None:
            from jobqueue.roles.admin_render import render
        print(render(cmd, result))
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
