"""One adapter module per library; ``ADAPTERS`` lists them in table order (jobqueue first)."""

from __future__ import annotations

import importlib

from adapters.base import Adapter

_CLASSES = {
    "jobqueue": "adapters.lib_jobqueue:JobqueueAdapter",
    "rq": "adapters.lib_rq:RQAdapter",
    "arq": "adapters.lib_arq:ArqAdapter",
    "saq": "adapters.lib_saq:SaqAdapter",
    "dramatiq": "adapters.lib_dramatiq:DramatiqAdapter",
    "celery": "adapters.lib_celery:CeleryAdapter",
    "taskiq-list": "adapters.lib_taskiq:TaskiqListAdapter",
    "taskiq-stream": "adapters.lib_taskiq:TaskiqStreamAdapter",
    "huey": "adapters.lib_huey:HueyAdapter",
}
NAMES = list(_CLASSES)


def load(key: str) -> type[Adapter]:
    """Import one adapter lazily, so a library that fails to import fails only its own row."""
    module, _, attr = _CLASSES[key].partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(module), attr)
    return cls
