"""Go-style durations ("500ms", "1m30s") as used by the seed's YAML config.

Written here rather than taken from a library: the PyPI duration parsers accept other
grammars (ISO 8601, "1 hour"), and the seed's files use exactly Go's ``time.ParseDuration``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string; a bare number means seconds."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        return timedelta(seconds=float(s))
    except ValueError:
        pass
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (use Go syntax such as 500ms, 10s, 1m30s)")
        total += float(m.group(1)) * _UNITS_S[m.group(2)]
        pos = m.end()
    return timedelta(seconds=sign * total)


def format_duration(value: timedelta) -> str:
    """Render a duration the way the seed's files write them (shortest exact Go form)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms % 1000:
        return f"{total_ms}ms"
    secs = total_ms // 1000
    out = ""
    hours, secs = divmod(secs, 3600)
    minutes, secs = divmod(secs, 60)
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out


def _coerce(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms or 10s, not a boolean")
    try:
        if isinstance(value, int | float):
            return timedelta(seconds=value)
        if isinstance(value, str):
            return parse_duration(value)
    except OverflowError:  # pydantic reports only ValueError cleanly; this one would be a traceback
        raise ValueError(f"duration {value!r} is out of range") from None
    raise ValueError(f"expected a duration such as 500ms or 10s, got {type(value).__name__}")


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A timedelta field that accepts Go durations and numbers of seconds and dumps as Go text."""
