"""Backend drivers: one module or package per component type, named by `x-cityhub.driver` in its schema.

A driver imports only `cityhub_operator.driver` (the interface) and its backend's client library: never
another driver, never kopf or the Kubernetes client (checked by .importlinter and
tests/unit/test_operator_layers.py).
"""
