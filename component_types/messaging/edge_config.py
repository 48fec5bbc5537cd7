"""The nats-server.conf of an edge cluster's messaging: a NATS leaf node of the hub, JetStream of its own.

Rendered on the hub's side (the stack, or the local launcher) from the messaging master secret; the edge
receives only what it needs: this configuration (public keys and JWTs signed by the operator key) and one
leaf credentials file per department (edge_credentials: a user key of that department's account, nothing
else). The master secret never reaches an edge.

    operator           the same trusted operator as the hub (cityhub_nats.keys)
    resolver           `full` (a directory of account JWTs, <store_dir>/accounts), with the system
                       account and each department account preloaded (edges.edge_account_jwt). Why not a
                       `cache` resolver fetching account JWTs from the hub through a system-account leaf
                       remote: it knows only accounts looked up before the uplink failed, evicts them
                       after its TTL and has none after a restart while the uplink is down, so devices
                       could not connect exactly when the edge must work alone; and it would bridge the
                       edge's system account into the hub's (the city's control plane reachable from a
                       street office's machine). Preloaded JWTs always work. Why `full` and not MEMORY:
                       the operator serving the edge pushes a department's account JWT to the edge
                       ($SYS.REQ.CLAIMS.UPDATE, through the edge's own system account) the moment it
                       revokes a user on the hub, so a deleted channel's credentials stop working on the
                       edge at once, not at the next re-render; the directory keeps that JWT across
                       restarts, and a preload never replaces a newer one (nats-server stores only
                       newer JWTs). A new department is a re-render and `nats-server --signal reload`.
    jetstream          domain = the edge's name (edges.domain), store in <store_dir>/jetstream
    leafnodes.remotes  one per department, bound to its account, with that account's leaf credentials
                       (edges.leaf_creds), to the hub's leafnode listener; nats-server reconnects by itself
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cityhub_nats.keys import Keys
from component_types.messaging import edges


def _quoted(value: str) -> str:
    return f'"{value}"'


def creds_file(department: str) -> str:
    """The name of a department's leaf credentials file in the edge's credentials directory."""
    return f"{department}.leaf.creds"


def edge_credentials(secret: bytes, edge: str, departments: Sequence[str]) -> dict[str, str]:
    """File name -> .creds text of every department's leaf node user (a Secret on a real edge)."""
    keys = Keys(secret)
    return {creds_file(d): edges.leaf_creds(keys, d, edge) for d in sorted(departments)}


def edge_config(
    secret: bytes,
    *,
    edge: str,
    departments: Mapping[str, int],
    hub_leafnode_urls: Sequence[str],
    store_dir: str,
    creds_dir: str,
    listen: str = "0.0.0.0:4222",
    server_name: str | None = None,
    http: str | None = None,
    max_file_store: str | None = None,
    revocations: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The configuration's text.

    `departments`: each department on the edge -> the bytes of JetStream file store its streams may
    reserve on the edge; `hub_leafnode_urls`: nats-leaf://host:port of the hub's leafnode listener(s);
    `creds_dir`: where edge_credentials' files are on the edge; `revocations`: per department, the users
    revoked on the hub (user public key -> revoked at), so a withdrawn credential is refused here too.
    """
    keys = Keys(secret)
    name = server_name or f"{edges.domain(edge)}-nats"
    urls = ", ".join(_quoted(u) for u in hub_leafnode_urls)
    jetstream = [f"store_dir: {_quoted(store_dir + '/jetstream')}", f"domain: {_quoted(edges.domain(edge))}"]
    if max_file_store:
        jetstream.append(f"max_file_store: {max_file_store}")
    remotes: list[str] = []
    preload = [f"  {keys.system_account.public}: {_quoted(keys.system_account_jwt())}"]
    for department in sorted(departments):
        account = keys.account(department).public
        remotes += [
            "    {",
            f"      urls: [{urls}]",
            f"      account: {_quoted(account)}",
            f"      credentials: {_quoted(creds_dir + '/' + creds_file(department))}",
            "    }",
        ]
        token = edges.edge_account_jwt(
            keys,
            department,
            file_store=departments[department],
            revocations=(revocations or {}).get(department),
        )
        preload.append(f"  {account}: {_quoted(token)}")
    lines = [
        f"# Rendered by component_types.messaging.edge_config: edge cluster {edge}, a leaf node of the hub.",
        "# Holds public keys and signed JWTs only; the leaf credentials are files of their own.",
        f"server_name: {_quoted(name)}",
        f"listen: {_quoted(listen)}",
        *([f"http: {_quoted(http)}"] if http else []),
        "jetstream {",
        *(f"  {line}" for line in jetstream),
        "}",
        "leafnodes {",
        "  remotes: [",
        *remotes,
        "  ]",
        "}",
        f"operator: {_quoted(keys.operator_jwt())}",
        f"system_account: {_quoted(keys.system_account.public)}",
        "resolver {",
        "  type: full",
        f"  dir: {_quoted(store_dir + '/accounts')}",
        "  allow_delete: false",
        "}",
        "resolver_preload {",
        *preload,
        "}",
    ]
    return "\n".join(lines) + "\n"
