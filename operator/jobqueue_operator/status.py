"""The JobQueue's status conditions, kept per object in kopf's memo and written whole.

Both writers of the status (the reconcile handler and the autoscaler daemon) run in one event
loop and share this store, so each status patch carries the full, current conditions list
(a merge patch replaces lists) without one writer undoing the other's conditions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobqueue_operator.models import CONDITION_TYPES


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Conditions:
    """metav1.Conditions by type; lastTransitionTime moves only when the status flips."""

    by_type: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Conditions:
        items: Iterable[Mapping[str, Any]] = (status or {}).get("conditions") or []
        return cls({c["type"]: dict(c) for c in items if isinstance(c, Mapping) and "type" in c})

    def set(self, type_: str, ok: bool | None, reason: str, message: str = "", generation: int | None = None) -> bool:
        """Set one condition; True when its status changed (a transition)."""
        status = "Unknown" if ok is None else ("True" if ok else "False")
        old = self.by_type.get(type_)
        changed = old is None or old.get("status") != status
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "lastTransitionTime": now_iso() if changed or old is None else old["lastTransitionTime"],
            "reason": reason,
            "message": message,
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        self.by_type[type_] = cond
        return changed

    def status_of(self, type_: str) -> str | None:
        cond = self.by_type.get(type_)
        return None if cond is None else str(cond["status"])

    def as_list(self) -> list[dict[str, Any]]:
        order = {t: i for i, t in enumerate(CONDITION_TYPES)}
        return [dict(c) for c in sorted(self.by_type.values(), key=lambda c: order.get(c["type"], 99))]


def phase(*, invalid: bool, paused: bool, redis_ok: bool | None, desired: int | None, polled: bool) -> str:
    """One word for `kubectl get jq -o wide`: the most important thing about the JobQueue now."""
    if invalid:
        return "Invalid"
    if paused:
        return "Paused"
    if redis_ok is False:
        return "Degraded"
    if not polled or desired is None:
        return "Pending"
    return "Idle" if desired == 0 else "Running"
