"""nats-server as a local process, for the embedded default of every type whose backend is a nats-server, and
for their tests and benchmarks: started, awaited and stopped through cityhub.supervisor only. (The CLI side
of cityhub_nats: it may import cityhub.supervisor, which the rest of the package may not.)"""

from __future__ import annotations

import shutil
from pathlib import Path

from cityhub import supervisor
from cityhub.supervisor import ProcessFailed, Record, Supervisor
from cityhub_api.settings import cache_dir
from cityhub_nats.server_config import server_config

BINARY = "nats-server"
START_TIMEOUT = 20.0


def nats_server_binary(cache: Path | None = None) -> Path:
    """<cache>/bin/nats-server (hack/nats.sh builds it), else the PATH's."""
    built = (cache or cache_dir()) / "bin" / BINARY
    if built.exists():
        return built
    found = shutil.which(BINARY)
    if found is None:
        raise ProcessFailed(
            f"{BINARY} is not installed (looked for {built} and on the PATH): run hack/nats.sh"
        )
    return Path(found)


class NatsServer:
    """A nats-server on 127.0.0.1, its configuration, data (JetStream store, account JWTs) and log in
    `directory`, so `start()` after `stop()` or `kill()` finds the same state on the same port.

    With `records`, the process is recorded there under `name` (so `cityhub operator status|stop` find it).
    """

    def __init__(
        self,
        directory: Path,
        secret: bytes,
        port: int | None = None,
        max_file_store: str | None = None,
        *,
        name: str = BINARY,
        records: Supervisor | None = None,
        binary: Path | None = None,
        mqtt_port: int | None = None,
        serves: str = "messaging backend",
        leafnode_port: int | None = None,
        jetstream_domain: str | None = None,
    ) -> None:
        """`mqtt_port`: also listen for MQTT clients there (the sensing gateway); 0 picks a free port.
        `leafnode_port`: also accept edge clusters' leaf node connections there; 0 picks a free port.
        `jetstream_domain`: the JetStream domain (a hub with edges names its own)."""
        self.directory = Path(directory)
        self.secret = secret
        self.port = port or supervisor.free_port()
        self.max_file_store = max_file_store
        self.name = name
        self.records = records
        self.binary = binary
        self.mqtt_port = (mqtt_port or supervisor.free_port()) if mqtt_port is not None else None
        self.serves = serves
        self.leafnode_port = (leafnode_port or supervisor.free_port()) if leafnode_port is not None else None
        self.jetstream_domain = jetstream_domain
        self.process = supervisor.Managed(name, records)

    @property
    def url(self) -> str:
        return f"nats://{supervisor.HOST}:{self.port}"

    @property
    def leafnode_url(self) -> str:
        """Where an edge's leaf node remotes point (nats-leaf://); only with a `leafnode_port`."""
        if self.leafnode_port is None:
            raise ValueError(f"{self.name} accepts no leaf nodes: give it a leafnode_port")
        return f"nats-leaf://{supervisor.HOST}:{self.leafnode_port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "nats-server.conf"

    @property
    def log(self) -> Path:
        return self.directory / "nats-server.log"

    def start(self, timeout: float = START_TIMEOUT) -> NatsServer:
        """Start it and wait until it accepts connections; ProcessFailed (with its log) if it does not."""
        binary = self.binary or nats_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            server_config(
                self.secret,
                store_dir=str(self.directory),
                listen=f"{supervisor.HOST}:{self.port}",
                server_name=f"cityhub-local-{self.port}",
                max_file_store=self.max_file_store,
                mqtt_listen=f"{supervisor.HOST}:{self.mqtt_port}" if self.mqtt_port else None,
                leafnode_listen=f"{supervisor.HOST}:{self.leafnode_port}" if self.leafnode_port else None,
                jetstream_domain=self.jetstream_domain,
            )
        )
        argv = [str(binary), "-c", str(self.config_file)]
        ports = {
            "client": self.port,
            **({"mqtt": self.mqtt_port} if self.mqtt_port else {}),
            **({"leafnode": self.leafnode_port} if self.leafnode_port else {}),
        }
        self.process.launch(
            argv,
            ready=lambda: all(supervisor.port_accepts(p) for p in ports.values()),
            timeout=timeout,
            log=self.log,
            ports=ports,
            serves=self.serves,
            url=self.url,
        )
        return self

    @property
    def record(self) -> Record | None:
        return self.process.record

    def stop(self) -> str:
        """SIGTERM (SIGKILL after a timeout), and forget its record; returns what happened."""
        return self.process.stop()

    def kill(self) -> str:
        """SIGKILL, like a crash."""
        return self.process.kill()

    def is_running(self) -> bool:
        return self.process.is_running()
