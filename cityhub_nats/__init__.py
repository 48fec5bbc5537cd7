"""NATS decentralized (JWT) auth for every cityhub component type whose backend is a nats-server.

    cityhub_nats.jwt            nkeys and signed JWTs (operator, account, user, activation) and .creds files
    cityhub_nats.keys           `Keys(master_secret)`: every nkey and the operator/system-account JWTs,
                                derived from one master secret (nothing to store, the same after a restart)
    cityhub_nats.server_config  `server_config(secret, …)`: a nats-server.conf trusting those keys, with
                                JetStream and a `full` resolver that accepts account JWTs pushed at runtime
    cityhub_nats.renewal        credentials that expire and are renewed before they do, and revocations
                                pruned once every token they refuse has expired
    cityhub_nats.client         the operator side (nats-py): connections, account read-modify-push,
                                streams, the server's JetStream room

Messaging (component_types/messaging) uses it today; a type that runs nats-server as an MQTT broker reuses it
with its own master secret. The driver (with nats-py), the Pulumi backend and the local launcher all derive
the same keys from the same secret, so this package depends on nkeys and the standard library only: no NATS
client, no Pulumi, nothing of cityhub's (checked by .importlinter).
"""
