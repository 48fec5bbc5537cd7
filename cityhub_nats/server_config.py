"""A nats-server.conf that trusts the keys of one master secret (NATS decentralized JWT auth).

The configuration names the operator (its JWT), the system account (preloaded) and a `full` resolver in
<store_dir>/jwt that accepts the account JWTs the operator pushes at runtime ($SYS.REQ.CLAIMS.UPDATE), with
JetStream storing under <store_dir>/jetstream. It holds no secret: only public keys and JWTs signed with the
master secret, so it can live in a ConfigMap.
"""

from __future__ import annotations

from cityhub_nats.keys import Keys


def _quoted(value: str) -> str:
    return f'"{value}"'


def server_config(
    secret: bytes,
    *,
    store_dir: str,
    listen: str = "0.0.0.0:4222",
    server_name: str = "cityhub-nats",
    http: str | None = None,
    max_file_store: str | None = None,
    max_memory_store: str | None = None,
    mqtt_listen: str | None = None,
    mqtt_tls: tuple[str, str] | None = None,
    max_payload: str | int | None = None,
    leafnode_listen: str | None = None,
    jetstream_domain: str | None = None,
) -> str:
    """The configuration's text.

    `listen`, `http` (monitoring) and `mqtt_listen` are host:port; `max_file_store`, `max_memory_store` and
    `max_payload` are nats-server sizes (10G, 512M, 1MB or a number of bytes). None leaves the server's
    default (no monitoring port, no MQTT listener, JetStream limits from the machine). `mqtt_tls` is the
    (certificate, key) file pair the MQTT listener serves TLS with.

    Edge clusters (component_types/messaging/edge_config.py): `leafnode_listen` (host:port) accepts the
    edges' leaf node connections, each authenticated by a user JWT of the department account it binds;
    `jetstream_domain` names the hub's JetStream so that edges with domains of their own stay apart from it
    (NATS needs the hub's domain set once more than one JetStream edge connects). None: neither, and the
    configuration is the one a hub without edges has always had.
    """
    mqtt = []
    if mqtt_listen:
        mqtt = ["mqtt {", f"  listen: {_quoted(mqtt_listen)}"]
        if mqtt_tls:
            cert, key = mqtt_tls
            mqtt += ["  tls {", f"    cert_file: {_quoted(cert)}", f"    key_file: {_quoted(key)}", "  }"]
        mqtt.append("}")
    keys = Keys(secret)
    jetstream = [f"store_dir: {_quoted(store_dir + '/jetstream')}"]
    if max_file_store:
        jetstream.append(f"max_file_store: {max_file_store}")
    if max_memory_store:
        jetstream.append(f"max_memory_store: {max_memory_store}")
    if jetstream_domain:
        jetstream.append(f"domain: {_quoted(jetstream_domain)}")
    leafnodes = []
    if leafnode_listen:
        # no_advertise: edges keep dialling the address they were given (the hub's public leafnode
        # address), never the server's own addresses it would otherwise gossip, which an edge cannot reach
        # through its uplink (and which would bypass whatever path the city chose for it).
        leafnodes = ["leafnodes {", f"  listen: {_quoted(leafnode_listen)}", "  no_advertise: true", "}"]
    lines = [
        "# Rendered by cityhub_nats.server_config: decentralized JWT auth, accounts pushed by the cityhub",
        "# operator through the system account. Holds public keys and signed JWTs only.",
        f"server_name: {_quoted(server_name)}",
        f"listen: {_quoted(listen)}",
        *([f"http: {_quoted(http)}"] if http else []),
        *([f"max_payload: {max_payload}"] if max_payload else []),
        "jetstream {",
        *(f"  {line}" for line in jetstream),
        "}",
        # MQTT needs JetStream and a server_name (both above); clients authenticate with a user JWT.
        *mqtt,
        *leafnodes,
        f"operator: {_quoted(keys.operator_jwt())}",
        f"system_account: {_quoted(keys.system_account.public)}",
        "resolver {",
        "  type: full",
        f"  dir: {_quoted(store_dir + '/jwt')}",
        "  allow_delete: true",
        '  interval: "2m"',
        "}",
        "resolver_preload {",
        f"  {keys.system_account.public}: {_quoted(keys.system_account_jwt())}",
        "}",
    ]
    return "\n".join(lines) + "\n"
