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
               then on), the export and the readers' imports are removed, the stream is deleted

Modules:

    settings     NatsSettings, from CITYHUB_NATS_*
    connections  the operator's NATS connections (system account, one per department account)
    accounts     account JWTs: read, change, push through the system account ($SYS.REQ.CLAIMS.UPDATE)
    streams      a channel's JetStream stream: wanted config, drift, create/update, delete
    channels     MessagingDriver (ensure, observe, delete, probe)
    probe        the round trip with a department's own credentials
    errors       which NATS errors are temporary, which refusals are permanent

The keys, JWTs and the server configuration trusting them come from cityhub_nats (one master secret).
"""

from __future__ import annotations

from collections.abc import Mapping

from component_types.messaging.driver.channels import MessagingDriver
from component_types.messaging.driver.settings import NatsSettings

__all__ = ["MessagingDriver", "NatsSettings", "create_driver"]


def create_driver(env: Mapping[str, str]) -> MessagingDriver:
    """The driver factory the operator core calls (through the registry: component_types/messaging/driver)."""
    return MessagingDriver(NatsSettings.from_env(env))
