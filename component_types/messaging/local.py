"""The messaging backend in the embedded default: one nats-server (JetStream) as a local process.

    start(ctx)        `cityhub operator start` calls it: one nats-server in ctx.directory, trusting the
                      keys of the checkout's messaging secret, reused while it runs (idempotent), with a
                      leafnode listener for edge clusters
    start_edge(ctx, edge, departments)
                      `cityhub operator start --cluster <edge>` calls it: the edge's own nats-server, a
                      leaf node of the hub's (local_edge.py)
    NatsServer        a nats-server on 127.0.0.1 in a directory, for the launcher, tests and benchmarks

    python -m component_types.messaging.local new-secret > secret                   a new master secret
    python -m component_types.messaging.local config --secret-file secret --store-dir /data \\
        [--listen 0.0.0.0:4222] [--http 0.0.0.0:8222] [--max-file-store 10G]     print nats-server.conf

Processes are started, awaited and stopped through cityhub.supervisor only.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from cityhub import supervisor
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub_nats.local import BINARY, NatsServer, nats_server_binary
from cityhub_nats.server_config import server_config
from component_types.messaging import edges
from component_types.messaging.local_edge import SECRET_PURPOSE, start_edge

__all__ = ["NatsServer", "main", "nats_server_binary", "start", "start_edge"]

def start(ctx: LocalContext) -> LocalBackend:
    """One nats-server for the operator's messaging driver; reused while it runs."""
    name = ctx.process_name(BINARY)
    secret_file = ctx.secret(SECRET_PURPOSE)
    rec = ctx.supervisor.get(name)
    if rec is None:
        # A server that stopped gets its port back (the operator may still hold its URL), when it is free.
        old = ctx.supervisor.record(name)
        port, leafnode = None, 0
        if old is not None and old.ports:
            port = old.port if supervisor.port_released(old.port) else None
            kept = old.ports.get("leafnode")
            leafnode = kept if kept and supervisor.port_released(kept) else 0
        # Edge clusters' leaf nodes join here (`cityhub operator start --cluster <edge>`): the listener, and a
        # JetStream domain of the hub's own so that each edge's domain stays apart from it.
        server = NatsServer(
            ctx.directory,
            secret_file.read_text(encoding="utf-8").strip().encode(),
            port=port,
            name=name,
            records=ctx.supervisor,
            binary=nats_server_binary(ctx.cache),
            leafnode_port=leafnode,
            jetstream_domain=edges.HUB_DOMAIN,
        ).start()
        assert server.record is not None
        rec = server.record
    url = rec.url or f"nats://{supervisor.HOST}:{rec.port}"
    return LocalBackend(
        operator_env={"CITYHUB_NATS_URL": url, "CITYHUB_NATS_SECRET_FILE": str(secret_file)},
        processes=(rec,),
        summary=f"nats-server (JetStream) at {url}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.messaging.local")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-secret", help="print a new random master secret")
    config = sub.add_parser("config", help="print a nats-server configuration trusting the secret's keys")
    config.add_argument("--secret-file", required=True, type=Path)
    config.add_argument("--store-dir", required=True)
    config.add_argument("--listen", default="0.0.0.0:4222")
    config.add_argument("--server-name", default="cityhub-nats")
    config.add_argument("--http", default=None, help="monitoring listen address, e.g. 0.0.0.0:8222")
    config.add_argument("--max-file-store", default=None, help="e.g. 10G")
    config.add_argument("--mqtt-listen", default=None, help="MQTT listen address, e.g. 0.0.0.0:1883")
    args = parser.parse_args(argv)
    if args.command == "new-secret":
        print(secrets.token_urlsafe(48))
        return 0
    secret = args.secret_file.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        print(
            f"{args.secret_file}: needs at least 32 characters of random text (new-secret)", file=sys.stderr
        )
        return 2
    sys.stdout.write(
        server_config(
            secret,
            store_dir=args.store_dir,
            listen=args.listen,
            server_name=args.server_name,
            http=args.http,
            max_file_store=args.max_file_store,
            mqtt_listen=args.mqtt_listen,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
