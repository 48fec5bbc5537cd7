"""Settings helpers for drivers (part of the driver interface, like driver.py): every driver reads its
CITYHUB_<BACKEND>_* variables the same way and fails with the same kind of message."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def secret_setting(env: Mapping[str, str], name: str, *, min_length: int, needs: str) -> str:
    """A secret given as `<name>_FILE` (a path, e.g. a mounted Secret key) or, for development, as `<name>`.

    ValueError names the variable and says what it needs, never the value.
    """
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(f"Invalid {name}_FILE={path}: needs to be a readable file ({e})") from e
        where = f"{name}_FILE={path}"
    else:
        text = env.get(name, "").strip()
        where = name
    if len(text) < min_length:
        raise ValueError(f"Invalid {where}: needs to hold at least {min_length} characters of {needs}")
    return text
