"""The limit kinds a component type declares (x-cityhub.limits): durations, quantities and integers."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_QUANTITY = re.compile(r"^([1-9][0-9]*)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse(kind: str, value: object) -> int:
    """A limit as a number: durations in seconds, quantities in bytes. ValueError says what it needs to be."""
    if kind == "duration":
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} needs to be a duration like 90m, 24h or 7d")
        return int(m[1]) * _DURATION_UNITS[m[2]]
    if kind == "quantity":
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        m = _QUANTITY.match(str(value))
        if not m:
            raise ValueError(f"{value!r} needs to be a positive integer or a quantity like 512Mi or 10Gi")
        return int(m[1]) * _QUANTITY_UNITS[m[2]]
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise ValueError(f"{value!r} needs to be a positive integer")
        if int(value) <= 0:
            raise ValueError(f"{value!r} needs to be a positive integer")
        return int(value)
    raise ValueError(f"unknown limit kind {kind!r}")
