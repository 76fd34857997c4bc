"""Start the operator in-process: ``job-queue-system --role=operator`` calls ``main(argv)``.

Same handlers as ``kopf run -m jobqueue_operator.main``; standalone (no peering) by default,
with kopf's liveness endpoint, watching the namespaces given by ``--namespace`` (repeatable),
``JOBQUEUE_OPERATOR_WATCH_NAMESPACES`` (comma-separated), or every namespace with
``--all-namespaces`` (the default when none is given).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

import kopf

NAMESPACES_ENV = "JOBQUEUE_OPERATOR_WATCH_NAMESPACES"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
#: The chart sets the log level through the runtime's variable name.
LOG_LEVEL_ENV = "OBSERVABILITY_LOG_LEVEL"


def parse_args(argv: Sequence[str] | None, environ: dict[str, str] | None = None) -> argparse.Namespace:
    env = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(prog="job-queue-system --role=operator", description=__doc__)
    parser.add_argument("--role", default="operator", help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        dest="standalone",
        action="store_true",
        default=True,
        help="run without peering (one replica; the default)",
    )
    peering.add_argument(
        "--peering", dest="standalone", action="store_false", help="coordinate replicas through kopf peering objects"
    )
    parser.add_argument("--liveness", default=DEFAULT_LIVENESS, help="kopf liveness endpoint URL ('' disables)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.namespace and not args.all_namespaces:
        args.namespace = [n.strip() for n in env.get(NAMESPACES_ENV, "").split(",") if n.strip()]
    if args.namespace and args.all_namespaces:
        parser.error("--namespace and --all-namespaces are exclusive")
    args.clusterwide = not args.namespace
    return args


def main(argv: list[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 when the operator failed."""
    args = parse_args(argv)
    name = "DEBUG" if args.verbose else os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    level = logging.getLevelName({"WARN": "WARNING"}.get(name, name))
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import jobqueue_operator.main  # noqa: F401  (registers the handlers)

    try:
        asyncio.run(
            kopf.operator(
                standalone=args.standalone,
                clusterwide=args.clusterwide,
                namespaces=args.namespace,
                liveness_endpoint=args.liveness or None,
            )
        )
    except KeyboardInterrupt:
        return 0
    except Exception:
        logging.getLogger("jobqueue_operator").exception("operator failed")
        return 1
    return 0
