"""What the maps backend's local processes share: where the programs are, and one way to spawn a server and
give a restarted one its old port back (component_types/maps/local.py: PostGIS; local_martin.py: martin)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cityhub import supervisor
from cityhub.supervisor import ProcessFailed, Record, Supervisor
from cityhub_api.settings import Env, cache_dir

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
"""The system user PostgreSQL runs as when the caller is root (Debian's postgresql package creates it)."""
START_TIMEOUT = 60.0
INSTALL = "component_types/maps/install.sh"


@dataclass(frozen=True)
class Binaries:
    """Where PostgreSQL's programs and martin are."""

    pg_bin: Path
    """CITYHUB_PG_BIN: PostgreSQL 15's programs (initdb, postgres, psql, pg_isready); default Debian's
    /usr/lib/postgresql/15/bin."""
    martin: Path
    """CITYHUB_MARTIN_BIN: martin; default <cache>/bin/martin (component_types/maps/install.sh builds it)."""

    @classmethod
    def from_env(cls, env: Env, cache: Path | None = None) -> Binaries:
        cache = cache or cache_dir(env.env)
        return cls(
            pg_bin=env.path("CITYHUB_PG_BIN", PG_BIN),
            martin=env.path("CITYHUB_MARTIN_BIN", cache / "bin" / "martin"),
        )

    def require(self) -> None:
        """ProcessFailed naming what is missing and how to install it (PostgreSQL + PostGIS, martin)."""
        missing = [str(p) for p in (self.pg_bin / "postgres", self.pg_bin / "psql") if not p.exists()]
        if not missing and not self.postgis_control().exists():
            missing.append(str(self.postgis_control()))
        if not (self.martin.is_file() and os.access(self.martin, os.X_OK)):
            missing.append(str(self.martin))
        if missing:
            raise ProcessFailed(
                f"the maps backend is not installed (missing {', '.join(missing)}): run {INSTALL} "
                "(hack/toolchain.sh runs it)"
            )

    def postgis_control(self) -> Path:
        """PostGIS's extension file in this PostgreSQL's share directory."""
        try:
            found = subprocess.run(
                [str(self.pg_bin / "pg_config"), "--sharedir"], capture_output=True, text=True, timeout=10
            )
            share = Path(found.stdout.strip()) if found.returncode == 0 else None
        except OSError:
            share = None
        return (share or Path("/usr/share/postgresql/15")) / "extension" / "postgis.control"


def spawn(records: Supervisor | None, name: str, argv: list[str], **how: object) -> Record:
    if records is not None:
        return records.spawn(name, argv, **how)
    return supervisor.spawn(name, argv, **how)  # type: ignore[arg-type]


def previous_port(records: Supervisor | None, name: str, key: str) -> int | None:
    """The port of a stopped server's record when it is free again: a restarted server gets it back."""
    old = records.record(name) if records is not None else None
    port = old.ports.get(key) if old is not None else None
    return port if port is not None and supervisor.port_released(port) else None
