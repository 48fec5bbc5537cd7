"""The one way cityhub reads a setting from the environment: typed readers whose errors name the variable.

    env = Env(os.environ)                       # or any mapping (tests pass a dict)
    interval = env.number("CITYHUB_DRIFT_INTERVAL", 60.0, minimum=1.0)
    url = env.url("CITYHUB_NATS_URL", schemes=("nats", "tls"), required=True)
    secret = env.secret("CITYHUB_NATS_SECRET", min_length=32, needs="random text")

Every reader treats an empty or blank variable as unset and returns its default. A bad value raises
SettingError, "Invalid NAME=value: needs to be …" (a secret's value is never repeated). The operator, its
probes, every driver, the CLI and the local launchers read their settings through this class; each group of
settings is a frozen dataclass with a `from_env(env)` constructor and one docstring per field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


class SettingError(ValueError):
    """A setting has a value cityhub cannot use; the message names the variable and what it needs."""


class NotConfigured(SettingError):
    """A required setting is not set at all (a backend nobody configured, rather than a wrong value)."""


class Env:
    """Typed, validated access to environment variables."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when the variable is unset or blank."""
        value = self.env.get(name, "").strip()
        return value or None

    def _invalid(self, name: str, raw: str, needs: str) -> SettingError:
        return SettingError(f"Invalid {name}={raw}: needs to be {needs}")

    def text(self, name: str, default: str = "", *, required: bool = False, needs: str = "set") -> str:
        raw = self.raw(name)
        if raw is None:
            if required:
                raise NotConfigured(f"{name} is not set: needs to be {needs}")
            return default
        return raw

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float = 0.0,
        exclusive: bool = False,
        unit: str = "seconds",
    ) -> float:
        """A number (of seconds, by default) of at least `minimum` (above it when `exclusive`)."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        ok = value > minimum if exclusive else value >= minimum  # both false for NaN
        if not ok:
            bound = f"above {minimum:g}" if exclusive else f"at least {minimum:g}"
            raise self._invalid(name, raw, f"a number of {unit}, {bound}" if unit else f"a number {bound}")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        value = int(raw) if raw.lstrip("-").isdigit() else None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise self._invalid(name, raw, f"an integer of at least {minimum}{upper}")
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port, or 0 to turn the listener off."""
        raw = self.raw(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) > 65535:
            raise self._invalid(name, raw, "a TCP port (1-65535) or 0 to turn it off")
        return int(raw)

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise self._invalid(name, raw, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, matched case-insensitively and returned as spelled in `choices`."""
        raw = self.raw(name)
        if raw is None:
            return default
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise self._invalid(name, raw, f"one of {', '.join(choices)}")

    def json_object(self, name: str, default: Mapping[str, object], *, needs: str) -> dict[str, object]:
        """A JSON object (e.g. pod scheduling fields a stack computed); `needs` says which keys it takes."""
        raw = self.raw(name)
        if raw is None:
            return dict(default)
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise self._invalid(name, raw, f"a JSON object {needs}")
        return value

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of lowercase DNS-label names (may be empty)."""
        raw = self.raw(name)
        if raw is None:
            return ()
        items = tuple(i.strip() for i in raw.split(",") if i.strip())
        bad = [i for i in items if not (i.replace("-", "").isalnum() and i.islower() and len(i) <= 63)]
        if bad:
            raise self._invalid(name, raw, "a comma-separated list of lowercase names")
        return items

    def url(
        self,
        name: str,
        default: str = "",
        *,
        schemes: tuple[str, ...] = ("http", "https"),
        required: bool = False,
        many: bool = False,
    ) -> str:
        """A URL with one of `schemes` and a host (comma-separated URLs when `many`), without a trailing /."""
        raw = self.raw(name)
        example = f"{schemes[0]}://host:port" + (" (comma-separated)" if many else "")
        if raw is None:
            if required:
                raise NotConfigured(f"{name} is not set: needs to be {example}")
            return default
        for part in raw.split(",") if many else [raw]:
            parsed = urlsplit(part.strip())
            if parsed.scheme not in schemes or not parsed.hostname:
                raise self._invalid(name, raw, example)
        return raw.rstrip("/")

    def path(self, name: str, default: Path) -> Path:
        raw = self.raw(name)
        return Path(raw).expanduser() if raw is not None else default

    def has_secret(self, name: str) -> bool:
        """Whether `<name>_FILE` or `<name>` is set (a secret may be optional until first used)."""
        return self.raw(f"{name}_FILE") is not None or self.raw(name) is not None

    def secret(self, name: str, *, min_length: int, needs: str) -> str:
        """A secret given as `<name>_FILE` (a path, e.g. a mounted Secret key) or, for development, `<name>`.

        The error names the variable and what it needs, never the value.
        """
        path = self.raw(f"{name}_FILE")
        if path is None and self.raw(name) is None:
            raise NotConfigured(f"{name}_FILE is not set: needs to name a file holding {needs}")
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8").strip()
            except OSError as e:
                raise SettingError(f"Invalid {name}_FILE={path}: needs to be a readable file ({e})") from e
            where = f"{name}_FILE={path}"
        else:
            text = self.raw(name) or ""
            where = name
        if len(text) < min_length:
            raise SettingError(f"Invalid {where}: needs to hold at least {min_length} characters of {needs}")
        return text


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """CITYHUB_CACHE, else ~/.cache/cityhub: where hack/toolchain.sh installs binaries and backends."""
    return Env(env).path("CITYHUB_CACHE", Path.home() / ".cache" / "cityhub")
