"""Messaging (消息通道) on NATS JetStream, with NATS decentralized (JWT) auth: the operator side.

How a MessagingChannel `<name>` in department (namespace) `<d>` maps onto NATS — every name is derived from
the request (component_types/messaging/naming.py), so retries and restarts find the same objects:

    account    one per department, key derived from ("account", <d>); its JWT (signed by the operator key)
               enables JetStream and carries the department's exports, imports and revoked users
    stream     `<name>` in the department's account, subjects city.<d>.<name> and city.<d>.<name>.>
    user       key derived from ("user", <d>/<name>/<uid>); its JWT (signed by the account key) may publish
               and subscribe on city.<d>.> only, read shared.> (what others share with <d>) and use the
               JetStream consumer API, but not create, change or delete streams
    sharing    a private stream export `channel/<name>` of city.<d>.<name>.> in <d>'s account, and in each
               reader's account an import `<d>/<name>` with an activation token signed by <d>'s account,
               mapped to shared.<d>.<name>.>; a reader that is no longer granted loses its import and its
               activation is revoked on the export
    deletion   the user key is revoked in the account JWT (the server disconnects it and refuses it from
               then on), the export and the readers' imports are removed, the stream is deleted; Orphan
               (`orphan`) does the same but keeps the stream
    limits     the account's JetStream stores are what its streams reserve, within the department's quota;
               connections, subscriptions, payload, streams and consumers are capped; no leaf nodes
               (a department on an edge cluster: its edge's one)
    edges      with CITYHUB_NATS_EDGE, the operator serves an edge cluster's departments: each channel's
               stream lives on the edge (a leaf node of the hub), the hub's stream of the same name sources
               it and republishes for shares; the Secret's url is the edge's
    expiry     credentials and activations expire and are renewed every third of their lifetime, so
               revocations older than a lifetime are pruned and account JWTs stay small

Modules:

    settings      NatsSettings, EdgeSettings and DepartmentLimits, from CITYHUB_NATS_*
    channels      MessagingDriver (ensure, observe, delete, orphan, probe)
    streams       a channel's JetStream stream: wanted config, drift, create/update, delete
    edges         a channel of a department on an edge: the edge's stream and sourcing consumer, the hub's
                  sourcing stream, the uplink's state
    reservations  the account's JetStream limits following its streams (and the department's quota)
    shares        exports, imports and the bound on what one department receives (TooManyShares)
    revocations   revoking users, pruning revocations, dropping expired imports
    probe         the round trip with a department's own credentials, on the operator's own server (or edge)
    errors        which NATS errors are temporary, which refusals are permanent

The keys, JWTs, connections, account read-modify-push and the server configuration trusting them come from
cityhub_nats (one master secret); cityhub_nats.renewal says when credentials are issued and expire.
"""

from __future__ import annotations

from collections.abc import Mapping

from component_types.messaging.driver.channels import MessagingDriver
from component_types.messaging.driver.settings import NatsSettings

__all__ = ["MessagingDriver", "NatsSettings", "create_driver"]


def create_driver(env: Mapping[str, str]) -> MessagingDriver:
    """The driver factory the operator core calls (through the registry: component_types/messaging/driver)."""
    return MessagingDriver(NatsSettings.from_env(env))
