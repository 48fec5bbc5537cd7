"""Ready and Synced conditions in the Kubernetes style (type, status, reason, message, lastTransitionTime,
observedGeneration)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

READY = "Ready"
SYNCED = "Synced"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get(conditions: Iterable[Mapping[str, Any]] | None, ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == ctype), None)


def is_true(
    conditions: Iterable[Mapping[str, Any]] | None, ctype: str, generation: int | None = None
) -> bool:
    c = get(conditions, ctype)
    if c is None or c.get("status") != "True":
        return False
    return generation is None or c.get("observedGeneration") == generation


def with_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
) -> list[dict[str, Any]]:
    """The conditions with `ctype` set; lastTransitionTime only moves when the status changes."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    old = get(conditions, ctype)
    for c in conditions or []:
        if c.get("type") != ctype:
            out.append(dict(c))
    out.append(
        {
            "type": ctype,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == value else now(),
            "observedGeneration": generation,
        }
    )
    return sorted(out, key=lambda c: c["type"])
