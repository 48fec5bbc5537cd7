"""cityhub's component operator: departments request shared components as custom resources.

Layers (checked by the contracts in .importlinter and tests/unit/test_operator_layers.py):
the core (this package outside `drivers/`) never imports a driver — drivers are found by name through the
component type's schema (schemas/components/<type>.schema.json, `x-cityhub.driver`) — and drivers never
import each other, kopf or the Kubernetes client.
"""
