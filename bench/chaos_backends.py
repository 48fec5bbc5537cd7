"""Taking one component type's embedded backend down and bringing it back on the same ports (bench/chaos.py).

Every type's backend was started by `cityhub operator start`'s launchers (cityhub.local_operator.
start_backends) into <state>/backends/<type>, its processes recorded in <state>/processes. `down(type)`
stops each of its processes (its record stays, so its ports are known); `up(type)` starts them again through
the type's own server classes on the recorded ports, so the operator, which holds their URLs, finds them where
they were. Nothing here talks to a backend: stopping and starting go through cityhub.supervisor only.

    messaging   nats-server (NatsServer)                           its JetStream store and account JWTs kept
    sensing     MQTT gateway nats-server and the relay (Gateway)   store, accounts and the fleets bucket kept
    maps        PostGIS and martin (LocalMaps)                     SIGINT: PostgreSQL's fast shutdown
    identity    Keycloak (KeycloakServer)                          its H2 database kept; ~20-60 s to start
    inference   MLServer and the gateway (MLServer, Gateway)       reloads every endpoint's model at start
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cityhub import supervisor
from cityhub.supervisor import Record, Supervisor
from cityhub_api.settings import Env


@dataclass(frozen=True)
class Backends:
    """The embedded backends of one state directory (<state>), started by start_backends."""

    state: Path
    cache: Path

    @property
    def records(self) -> Supervisor:
        return Supervisor(self.state / "processes")

    def directory(self, type_name: str) -> Path:
        return self.state / "backends" / type_name

    def secret_file(self, purpose: str) -> Path:
        return self.state / "backends" / "secrets" / purpose

    def processes(self, type_name: str) -> list[Record]:
        """The type's process records (alive or not), in start order."""
        return [r for r in self.records.records() if r.name.startswith(f"{type_name}-")]

    def alive(self, type_name: str) -> bool:
        procs = self.processes(type_name)
        return bool(procs) and all(supervisor.is_running(r) for r in procs)

    def down(self, type_name: str) -> list[str]:
        """Stop every process of the type, newest first (the relay before its gateway, martin before
        PostGIS); the records stay for `up`. Returns what happened to each."""
        out = []
        for rec in reversed(self.processes(type_name)):
            # PostgreSQL's SIGTERM waits for every client to disconnect: SIGINT is its fast shutdown.
            sig = signal.SIGINT if rec.name.endswith("-postgres") else signal.SIGTERM
            out.append(f"{rec.name} {supervisor.stop(rec, timeout=30, sig=sig)}")
        return out

    def up(self, type_name: str) -> float:
        """Start the type's processes again on their recorded ports; returns the seconds it took."""
        starts: dict[str, Callable[[], None]] = {
            "messaging": self._messaging,
            "sensing": self._sensing,
            "maps": self._maps,
            "identity": self._identity,
            "inference": self._inference,
        }
        began = time.monotonic()
        starts[type_name]()
        return time.monotonic() - began

    def _record(self, name: str) -> Record:
        rec = self.records.record(name)
        if rec is None:
            raise supervisor.ProcessFailed(f"no record of {name} in {self.records.directory}")
        for port in rec.ports.values():
            supervisor.port_released(port, timeout=15)
        return rec

    def _messaging(self) -> None:
        from component_types.messaging.local import NatsServer, nats_server_binary

        rec = self._record("messaging-nats-server")
        NatsServer(
            self.directory("messaging"),
            self.secret_file("messaging").read_text(encoding="utf-8").strip().encode(),
            port=rec.ports["client"],
            name=rec.name,
            records=self.records,
            binary=nats_server_binary(self.cache),
        ).start()

    def _sensing(self) -> None:
        from component_types.sensing.local import Gateway

        gateway, relay = self._record("sensing-gateway"), self._record("sensing-relay")
        ports = (gateway.ports["client"], gateway.ports["mqtt"], relay.ports["metrics"])
        Gateway(
            self.directory("sensing"), self.secret_file("sensing"), records=self.records, ports=ports
        ).start()

    def _maps(self) -> None:
        from component_types.maps.local import Binaries, LocalMaps, postgis_home

        postgres, martin = self._record("maps-postgres"), self._record("maps-martin")
        directory = self.directory("maps")
        local = LocalMaps(
            directory,
            self.secret_file("maps"),
            self.secret_file("maps-postgres").read_text(encoding="utf-8").strip(),
            records=self.records,
            binaries=Binaries.from_env(Env(), self.cache),
            postgis_directory=postgis_home(directory),
        )
        local.postgis.port, local.martin.port = postgres.ports["postgres"], martin.ports["http"]
        local.start()

    def _identity(self) -> None:
        from component_types.identity import keycloak
        from component_types.identity.local import KeycloakServer

        rec = self._record("identity-keycloak")
        KeycloakServer(
            self.directory("identity"),
            home=keycloak.keycloak_home(self.cache),
            supervisor=self.records,
            name=rec.name,
            http_port=rec.ports["http"],
            management_port=rec.ports["management"],
            https_port=rec.ports.get("https"),
        ).start()

    def _inference(self) -> None:
        from component_types.inference.local import Gateway, MLServer, mlserver_binary

        server_rec, gateway_rec = self._record("inference-mlserver"), self._record("inference-gateway")
        directory = self.directory("inference")
        server = MLServer(
            directory,
            mlserver_binary(self.cache),
            name=server_rec.name,
            ports=server_rec.ports,
            records=self.records,
        )
        # It loads every endpoint's model before it says ready: minutes with hundreds on a busy machine.
        server.start(timeout=600)
        Gateway(
            directory,
            directory / "routes",
            server.url,
            name=gateway_rec.name,
            port=gateway_rec.port,
            records=self.records,
        ).start(timeout=60)
