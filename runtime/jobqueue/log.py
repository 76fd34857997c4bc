"""Structured logging on the standard library: JSON lines, or a readable console format.

Job events pass their fields with ``extra=`` (job_id, queue, attempt, ...), never in the text.
Written on the stdlib rather than structlog so libraries that log through ``logging`` (redis,
kopf, aiohttp) come out in the same format with no bridge.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from jobqueue.errors import ConfigError

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_LEVELS = {"warn": "warning"}
LEVELS = ("debug", "info", "warning", "warn", "error", "critical")

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"']*:)[^@\s\"']+@", re.IGNORECASE)


def redact(text: str) -> str:
    """Mask the password of any URL in a log line (a safety net: code logs redacted URLs already)."""
    return _URL_PASSWORD.sub(r"\1***@", text) if "@" in text else text


class _Context(logging.Filter):
    """Adds process-wide fields (role, worker_id) to every record."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, separators=(",", ":")))


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        text = f"{t} {record.levelname:<7} {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redact(text)


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, **context: Any
) -> logging.Handler:
    """Install one handler on the root logger; returns it (tests remove it).

    ``context`` fields (role, worker_id) go on every line; ``set_context`` adds more later.
    """
    if level.lower() not in LEVELS:
        raise ConfigError([f"observability.log_level: unknown level {level!r}; use one of {', '.join(LEVELS)}"])
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    handler.addFilter(_Context(context))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_jobqueue", False):
            root.removeHandler(old)
    handler._jobqueue = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level.lower(), level.lower()).upper())
    return handler


def set_context(**fields: Any) -> None:
    """Add process-wide fields (e.g. worker_id once it is known) to the installed handler's lines."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_jobqueue", False):
            for f in handler.filters:
                if isinstance(f, _Context):
                    f.fields.update(fields)
