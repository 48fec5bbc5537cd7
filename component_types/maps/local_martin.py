"""martin as a local process of the maps backend (component_types/maps/local.py starts it with PostGIS)."""

from __future__ import annotations

import os
from pathlib import Path

from cityhub import supervisor
from cityhub.supervisor import Record, Supervisor
from cityhub_api.settings import Env
from component_types.maps.local_common import START_TIMEOUT, Binaries, previous_port, spawn
from component_types.maps.martin_config import martin_config


class MartinServer:
    """martin on 127.0.0.1 connected as the tiles role; its config and log in `directory`.

    With `records`, the process is recorded there under `name`; a running one is reused when it was started
    with the same configuration, and restarted otherwise (e.g. PostGIS came back on another port).
    """

    def __init__(
        self,
        directory: Path,
        database_url: str,
        *,
        port: int | None = None,
        name: str = "maps-martin",
        records: Supervisor | None = None,
        binaries: Binaries | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.database_url = database_url
        self.port = port
        self.name = name
        self.records = records
        self.binaries = binaries or Binaries.from_env(Env())
        self.record: Record | None = None

    @property
    def url(self) -> str:
        return f"http://{supervisor.HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "martin.yaml"

    @property
    def log(self) -> Path:
        return self.directory / "martin.log"

    def _config(self, port: int) -> str:
        return martin_config(self.database_url, listen=f"{supervisor.HOST}:{port}")

    def start(self, timeout: float = START_TIMEOUT, *, restart: bool = False) -> MartinServer:
        """Start it (or adopt the running one of `records`) and wait until /health answers; `restart` stops
        a running one first (its database connections went with a restarted PostGIS)."""
        running = self.records.get(self.name) if self.records is not None else None
        running = running or (self.record if self.is_running() else None)
        if running is not None:
            port = running.ports["http"]
            same = self.config_file.exists() and self.config_file.read_text() == self._config(port)
            if same and not restart:
                self.record, self.port = running, port
                return self
            supervisor.stop(running)
        self.port = self.port or previous_port(self.records, self.name, "http") or supervisor.free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)  # it holds the tiles role's password
        self.config_file.write_text(self._config(self.port))
        self.record = spawn(
            self.records,
            self.name,
            [str(self.binaries.martin), "--config", str(self.config_file)],
            log=self.log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "martin=warn")},
            cwd=self.directory,
            ports={"http": self.port},
            serves="maps backend (martin tiles)",
            url=self.url,
        )
        supervisor.wait_ready(self.record, lambda: supervisor.http_ok(f"{self.url}/health"), timeout)
        return self

    def stop(self) -> str:
        if self.record is None:
            return "not started"
        return supervisor.stop(self.record)

    def kill(self) -> str:
        if self.record is None:
            return "not started"
        return supervisor.kill(self.record)

    def is_running(self) -> bool:
        return self.record is not None and supervisor.is_running(self.record)
