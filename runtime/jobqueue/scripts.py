"""The Lua scripts shipped in ``jobqueue/lua``, loaded once, run by SHA with reload on NOSCRIPT.

redis-py's ``register_script`` is not used for pipelines because its pipeline path sends
SCRIPT EXISTS before every execute, which would double the round trips the worker saves by
pipelining; instead a NOSCRIPT reply triggers one SCRIPT LOAD and a re-send of that call only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s+(KEYS|ARGV)\[(\d+)([^\]]*)\]")
"""A header line naming KEYS[n] / ARGV[n]; anything after n ("..", "+P..") marks a variadic tail."""


@dataclass(frozen=True)
class ScriptSource:
    name: str
    source: str
    sha: str

    def header_counts(self) -> tuple[int, bool, int, bool]:
        """(fixed KEYS, variadic KEYS, fixed ARGV, variadic ARGV) declared by the header comment."""
        keys, argv = 0, 0
        keys_var = argv_var = False
        for line in self.source.splitlines():
            if not line.startswith("--"):
                break
            m = _HEADER.match(line)
            if not m:
                continue
            idx, var = int(m.group(2)), bool(m.group(3))
            if m.group(1) == "KEYS":
                if var:
                    keys_var = True
                else:
                    keys = max(keys, idx)
            elif var:
                argv_var = True
            else:
                argv = max(argv, idx)
        return keys, keys_var, argv, argv_var


def script_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".lua")
        for p in resources.files("jobqueue").joinpath("lua").iterdir()
        if p.name.endswith(".lua")
    )


@cache
def load_script(name: str) -> ScriptSource:
    text = resources.files("jobqueue").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return ScriptSource(name, text, hashlib.sha1(text.encode()).hexdigest())
