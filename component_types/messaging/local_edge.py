"""An edge cluster's messaging as a local process: a nats-server that is a leaf node of the hub's, for the
embedded default's edges, tests and benchmarks. Started, awaited and stopped through cityhub.supervisor only.

    EdgeNatsServer   a leaf node nats-server on 127.0.0.1 in a directory: its configuration and the
                     departments' leaf credentials rendered there (edge_config.py), JetStream in the
                     edge's domain; start() after stop() or kill() finds the same streams on the same port
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cityhub import supervisor
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.supervisor import ProcessFailed, Record, Supervisor
from cityhub_nats.local import BINARY, START_TIMEOUT, nats_server_binary
from component_types.messaging.edge_config import edge_config, edge_credentials

SECRET_PURPOSE = "messaging"
"""The master secret's name under the checkout's backend secrets (the hub's, local.py)."""
DEPARTMENT_FILE_STORE = 1 << 30
"""JetStream file store each department's streams may reserve on a local edge by default (1Gi)."""


class EdgeNatsServer:
    """A nats-server for edge cluster `edge`, leaf node of the hub at `hub_leafnode_urls` for each of
    `departments`. On a real edge only the rendered files would be there; locally it renders them itself
    from the master secret, as NatsServer does for the hub.

    With `records`, the process is recorded there under `name` (so `cityhub operator status|stop` find it).
    """

    def __init__(
        self,
        directory: Path,
        secret: bytes,
        edge: str,
        departments: Sequence[str] | Mapping[str, int],
        hub_leafnode_urls: Sequence[str],
        port: int | None = None,
        *,
        max_file_store: str | None = None,
        name: str | None = None,
        records: Supervisor | None = None,
        binary: Path | None = None,
        serves: str | None = None,
    ) -> None:
        """`departments`: the departments on the edge, or each -> its JetStream file store there (bytes)."""
        self.directory = Path(directory)
        self.secret = secret
        self.edge = edge
        if isinstance(departments, Mapping):
            self.departments = dict(departments)
        else:
            self.departments = {d: DEPARTMENT_FILE_STORE for d in departments}
        self.hub_leafnode_urls = list(hub_leafnode_urls)
        self.port = port or supervisor.free_port()
        self.max_file_store = max_file_store
        self.name = name or f"{BINARY}-{edge}"
        self.binary = binary
        self.serves = serves or f"messaging leaf node of edge {edge}"
        self.process = supervisor.Managed(self.name, records)

    @property
    def url(self) -> str:
        return f"nats://{supervisor.HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.directory / "nats-server.conf"

    @property
    def creds_dir(self) -> Path:
        return self.directory / "leaf"

    @property
    def log(self) -> Path:
        return self.directory / "nats-server.log"

    def render(self) -> None:
        """Write the configuration and the leaf credentials (owner-only, they hold user seeds)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.creds_dir.mkdir(mode=0o700, exist_ok=True)
        for file, text in edge_credentials(self.secret, self.edge, list(self.departments)).items():
            path = self.creds_dir / file
            path.write_text(text)
            os.chmod(path, 0o600)
        self.config_file.write_text(
            edge_config(
                self.secret,
                edge=self.edge,
                departments=self.departments,
                hub_leafnode_urls=self.hub_leafnode_urls,
                store_dir=str(self.directory),
                creds_dir=str(self.creds_dir),
                listen=f"{supervisor.HOST}:{self.port}",
                max_file_store=self.max_file_store,
            )
        )

    def start(self, timeout: float = START_TIMEOUT) -> EdgeNatsServer:
        """Start it and wait until it accepts local clients (with or without its uplink); ProcessFailed
        (with its log) if it does not."""
        binary = self.binary or nats_server_binary()
        self.render()
        self.process.launch(
            [str(binary), "-c", str(self.config_file)],
            ready=lambda: supervisor.port_accepts(self.port),
            timeout=timeout,
            log=self.log,
            ports={"client": self.port},
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


def start_edge(ctx: LocalContext, edge: str, departments: Sequence[str]) -> LocalBackend:
    """The edge's nats-server for `cityhub operator start --cluster <edge>`, a leaf node of the hub's running
    one (its record under ctx) for each of `departments`; the edge operator's CITYHUB_NATS_EDGE* settings.
    Rendered again and restarted when it runs with other departments (a new department on the edge)."""
    hub = ctx.supervisor.get(ctx.process_name(BINARY))
    if hub is None or not hub.ports.get("leafnode"):
        state = "is not running" if hub is None else "accepts no leaf nodes"
        raise ProcessFailed(
            f"the hub's nats-server {state}: start the hub's operator first "
            "(`cityhub operator stop && cityhub operator start`)"
        )
    name = ctx.process_name(f"{BINARY}-{edge}")
    old = ctx.supervisor.record(name)
    wanted = ", ".join(sorted(departments))
    serves = f"messaging leaf node of edge {edge} ({wanted or 'no department yet'})"
    running = ctx.supervisor.get(name)
    if running is not None and running.serves != serves:
        ctx.supervisor.stop(name)
        running = None
    if running is None:
        port = old.port if old is not None and old.ports and supervisor.port_released(old.port) else None
        server = EdgeNatsServer(
            ctx.directory / "edges" / edge,
            ctx.secret(SECRET_PURPOSE).read_text(encoding="utf-8").strip().encode(),
            edge,
            list(departments),
            [f"nats-leaf://{supervisor.HOST}:{hub.ports['leafnode']}"],
            port,
            name=name,
            records=ctx.supervisor,
            binary=nats_server_binary(ctx.cache),
            serves=serves,
        ).start()
        assert server.record is not None
        running = server.record
    url = running.url or f"nats://{supervisor.HOST}:{running.port}"
    return LocalBackend(
        operator_env={"CITYHUB_NATS_EDGE": edge, "CITYHUB_NATS_EDGE_URL": url},
        processes=(running,),
        summary=f"nats-server of edge {edge} at {url}, leaf node of the hub's",
    )
