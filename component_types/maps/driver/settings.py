"""The maps driver's settings (CITYHUB_MAPS_*), read through cityhub_api.settings.Env."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from cityhub_api.settings import Env, SettingError
from component_types.maps.naming import DATABASE

DEFAULT_PORT = 5432
DSN_NEEDS = "postgresql://user:password@host:port/database (a superuser of the maps database)"
SECRET_NEEDS = "random text, e.g. the output of `openssl rand -base64 48`"


@dataclass(frozen=True)
class MapsSettings:
    """Where PostGIS and martin are, and the master secret every maps credential derives from."""

    dsn: str
    """CITYHUB_MAPS_DSN_FILE (or CITYHUB_MAPS_DSN): the operator's connection, as a PostgreSQL superuser,
    to the maps database, postgresql://user:password@host:port/database."""
    secret: bytes
    """CITYHUB_MAPS_SECRET_FILE (or CITYHUB_MAPS_SECRET): master secret of every derived credential
    (at least 32 characters)."""
    tile_url: str
    """CITYHUB_MAPS_TILE_URL: martin's base URL as departments reach it (the maps front door), e.g.
    http://maps.cityhub-system.svc:3000."""
    public_host: str
    """CITYHUB_MAPS_PUBLIC_HOST: host:port of PostGIS as departments reach it; default the DSN's."""
    probe_url: str
    """CITYHUB_MAPS_PROBE_URL: martin's base URL as the operator reaches it; default CITYHUB_MAPS_TILE_URL."""
    timeout: float = 10.0
    """CITYHUB_MAPS_TIMEOUT: seconds for a connection, a tile fetch or a lock the operator waits for
    (above 0)."""
    department_connections: int = 10
    """CITYHUB_MAPS_DEPARTMENT_CONNECTIONS: most database connections one department's role may hold at once,
    so that no department takes the server's connection slots from the others and from martin."""

    @property
    def database(self) -> str:
        return urlsplit(self.dsn).path.lstrip("/") or DATABASE

    @classmethod
    def from_env(cls, env: Env) -> MapsSettings:
        dsn = _dsn(env)
        parts = urlsplit(dsn)
        tile_url = env.url("CITYHUB_MAPS_TILE_URL", required=True)
        public_host = env.text("CITYHUB_MAPS_PUBLIC_HOST", f"{parts.hostname}:{parts.port or DEFAULT_PORT}")
        host, _, port = public_host.rpartition(":")
        if not host or not port.isdigit():
            raise SettingError(
                f"Invalid CITYHUB_MAPS_PUBLIC_HOST={public_host}: needs to be host:port of PostGIS as "
                "departments reach it"
            )
        return cls(
            dsn=dsn,
            secret=env.secret("CITYHUB_MAPS_SECRET", min_length=32, needs=SECRET_NEEDS).encode(),
            tile_url=tile_url,
            public_host=public_host,
            probe_url=env.url("CITYHUB_MAPS_PROBE_URL", tile_url),
            timeout=env.number("CITYHUB_MAPS_TIMEOUT", 10.0, minimum=0.0, exclusive=True),
            department_connections=env.integer("CITYHUB_MAPS_DEPARTMENT_CONNECTIONS", 10, minimum=1),
        )


def _dsn(env: Env) -> str:
    """CITYHUB_MAPS_DSN_FILE (a mounted Secret key, since the DSN holds a password) or CITYHUB_MAPS_DSN.

    The error names the variable but never repeats the value: it holds the superuser's password.
    """
    name = "CITYHUB_MAPS_DSN"
    if not env.has_secret(name):
        raise SettingError(f"{name} is not set: needs to be {DSN_NEEDS} (or {name}_FILE, a file holding it)")
    dsn = env.secret(name, min_length=1, needs=DSN_NEEDS)
    parts = urlsplit(dsn)
    try:
        ok = parts.scheme in ("postgresql", "postgres") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
        where = f"{name}_FILE={env.raw(f'{name}_FILE')}" if env.raw(f"{name}_FILE") else name
        raise SettingError(f"Invalid {where}: needs to be {DSN_NEEDS}")
    return dsn
