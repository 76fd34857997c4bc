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
ADMIN_CMDS = ("stats", "peek", "purge-dlq")


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
    admin.add_argument("--queue", help="priority name, or dlq / scheduled / active / completed (peek)")
    admin.add_argument("--n", type=int, default=10, help="how many jobs (peek; default 10)")
    admin.add_argument("--yes", action="store_true", help="confirm a destructive command")
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
    from redis.exceptions import RedisError

    from jobqueue.broker import Broker
    from jobqueue.keys import QueueKeys
    from jobqueue.redis_conn import check, make_client
    from jobqueue.roles import admin

    redis = make_client(cfg.redis)
    broker = Broker(redis, QueueKeys(cfg.queue_name, tuple(cfg.worker.priorities)))
    result: Any
    try:
        await check(redis, cfg.redis)
        if args.admin_cmd == "stats":
            result = await admin.stats(broker)
        elif args.admin_cmd == "peek":
            if not args.queue:
                raise admin.UsageError("peek needs --queue (a priority name, dlq, scheduled, active or completed)")
            result = await admin.peek(broker, args.queue, args.n)
        else:
            result = await admin.purge_dlq(broker, args.yes)
    except admin.UsageError as err:
        print(f"job-queue-system: {err}", file=sys.stderr)
        return 2
    except (JobQueueError, RedisError) as err:
        print(f"job-queue-system: {err}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
