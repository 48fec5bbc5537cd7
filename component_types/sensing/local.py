"""The sensing backend in the embedded default: the MQTT gateway (a nats-server with its MQTT listener) and
the relay, as local processes.

    start(ctx)     `cityhub operator start` calls it: both processes in ctx.directory, trusting the keys of
                   the checkout's sensing secret, reused while they run (idempotent)
    Gateway        gateway + relay on free loopback ports, for the launcher, the tests and the benchmarks
"""

from __future__ import annotations

import sys
from pathlib import Path

from cityhub import supervisor
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.supervisor import Supervisor
from cityhub_nats.local import NatsServer, nats_server_binary

SECRET_PURPOSE = "sensing"


class Gateway:
    """The MQTT gateway and its relay in `directory`; `start()` after `stop()` finds the same accounts."""

    def __init__(
        self,
        directory: Path,
        secret_file: Path,
        *,
        records: Supervisor | None = None,
        prefix: str = "sensing-",
        ports: tuple[int | None, int | None, int | None] = (None, None, None),
        max_file_store: str | None = None,
    ) -> None:
        """`ports`: NATS, MQTT and relay metrics ports (None: free ones); `max_file_store`: the gateway's
        JetStream store (nats-server's default: most of the disk), as cityhub:backends.sensing.maxFileStore
        sets it in a cluster."""
        self.directory, self.secret_file, self.records, self.prefix = (
            Path(directory),
            secret_file,
            records,
            prefix,
        )
        nats_port, mqtt_port, metrics_port = ports
        self.server = NatsServer(
            self.directory / "gateway",
            secret_file.read_text(encoding="utf-8").strip().encode(),
            port=nats_port,
            name=f"{prefix}gateway",
            records=records,
            mqtt_port=mqtt_port or 0,
            max_file_store=max_file_store,
            serves="sensing backend: MQTT gateway",
        )
        self.metrics_port = metrics_port or supervisor.free_port()
        self.relay = supervisor.Managed(f"{prefix}relay", records)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{supervisor.HOST}:{self.server.mqtt_port}"

    def start(self) -> Gateway:
        self.server.start()
        argv = [sys.executable, "-m", "component_types.sensing.relay", "--url", self.url]
        argv += ["--secret-file", str(self.secret_file), "--metrics-port", str(self.metrics_port)]
        metrics = f"http://{supervisor.HOST}:{self.metrics_port}/metrics"
        self.relay.launch(
            argv,
            ready=lambda: supervisor.http_ok(metrics),
            timeout=30,
            log=self.directory / "relay.log",
            ports={"metrics": self.metrics_port},
            serves="sensing backend: relay (plans' size and rate limits)",
            url=metrics,
        )
        return self

    def stop(self) -> None:
        self.relay.stop()
        self.server.stop()

    def operator_env(self) -> dict[str, str]:
        return {
            "CITYHUB_SENSING_URL": self.url,
            "CITYHUB_SENSING_SECRET_FILE": str(self.secret_file),
            "CITYHUB_SENSING_MQTT_URL": self.mqtt_url,
        }


def start(ctx: LocalContext) -> LocalBackend:
    """The gateway and the relay for the operator's sensing driver; reused while both run."""
    nats_server_binary(ctx.cache)  # a clear error naming hack/nats.sh when it is missing
    secret_file = ctx.secret(SECRET_PURPOSE)
    running = ctx.supervisor.get(ctx.process_name("gateway")), ctx.supervisor.get(ctx.process_name("relay"))
    if all(running):
        gateway_rec, relay_rec = running
        assert gateway_rec is not None and relay_rec is not None
        env = {
            "CITYHUB_SENSING_URL": gateway_rec.url,
            "CITYHUB_SENSING_SECRET_FILE": str(secret_file),
            "CITYHUB_SENSING_MQTT_URL": f"mqtt://{supervisor.HOST}:{gateway_rec.ports['mqtt']}",
        }
        return LocalBackend(
            env, (gateway_rec, relay_rec), f"MQTT gateway at {env['CITYHUB_SENSING_MQTT_URL']}"
        )
    for rec in running:  # one of the two died: start both again, on their old ports where possible
        if rec is not None:
            ctx.supervisor.stop(rec.name)
    old = ctx.supervisor.record(ctx.process_name("gateway"))
    ports: tuple[int | None, int | None, int | None] = (None, None, None)
    if old is not None and all(supervisor.port_released(p) for p in old.ports.values()):
        ports = (old.ports.get("client"), old.ports.get("mqtt"), None)
    gateway = Gateway(
        ctx.directory, secret_file, records=ctx.supervisor, prefix=f"{ctx.type_name}-", ports=ports
    )
    gateway.start()
    assert gateway.server.record is not None and gateway.relay.record is not None
    return LocalBackend(
        gateway.operator_env(),
        (gateway.server.record, gateway.relay.record),
        f"MQTT gateway at {gateway.mqtt_url}, relay metrics {gateway.relay.record.url}",
    )
