"""The operator side of a nats-server backend: connections in the system account and in each department's
account, and account JWTs read, changed and pushed at runtime. Imports nats-py, so only drivers import it
(checked by .importlinter); the rest of cityhub_nats stays free of client libraries."""
