"""cityhub's component operator: departments request shared components as custom resources.

Layers (checked by the contracts in .importlinter): the core (this package) never imports a driver — the
registry (cityhub_api.registry) imports `component_types/<type>/driver` by name — and drivers use only the
driver interface (driver.py), never kopf or the core.
"""
