"""From component type to driver: the registry imports `component_types.<type>.driver` by name.

This is the only place the operator turns a type into a driver, and the import happens in the registry with
importlib, so the operator core has no import of any driver module (see .importlinter).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cityhub_api.registry import DRIVER, ComponentType, RoleMissing
from cityhub_api.settings import NotConfigured
from cityhub_operator.driver import Driver, Observation, PermanentBackendError, Request, Result

log = logging.getLogger("cityhub_operator")


class DriverLoadError(RuntimeError):
    """A component type's driver cannot be loaded; the message names the type and the module."""


class UnconfiguredDriver:
    """Stands in for a type whose backend nobody configured while the operator serves every type: the other
    types are served, and this type's requests say what the platform team has to set."""

    def __init__(self, ctype: ComponentType, missing: str) -> None:
        self.message = (
            f"the operator has no {ctype.name} backend ({missing}): ask the platform team to deploy it "
            f"(cityhub:backends.deploy) or set its settings ({ctype.name}'s README.md)"
        )

    async def ensure(self, request: Request) -> Result:
        raise PermanentBackendError("BackendNotConfigured", self.message)

    async def observe(self, request: Request) -> Observation:
        return Observation(in_sync=True)

    async def delete(self, request: Request) -> None:
        return None  # nothing can have been created without a backend

    async def close(self) -> None:
        return None


def load_driver(ctype: ComponentType, env: Mapping[str, str], *, required: bool = True) -> Driver:
    """Import the type's driver module and call its `create_driver(env)`.

    A backend whose settings are not set at all (NotConfigured) fails when the type was asked for
    (`required`, CITYHUB_COMPONENTS names it) and is replaced by an UnconfiguredDriver otherwise.
    """
    where = ctype.module_name(DRIVER)
    try:
        module = ctype.load(DRIVER)
    except (ImportError, RoleMissing) as e:
        raise DriverLoadError(f"component type {ctype.name}: cannot import {where} ({e})") from e
    factory = getattr(module, "create_driver", None)
    if not callable(factory):
        raise DriverLoadError(f"component type {ctype.name}: {where} has no create_driver(env)")
    try:
        driver = factory(env)
    except NotConfigured as e:
        if required:
            raise
        log.warning("%s requests will not be served: %s", ctype.kind, e)
        return UnconfiguredDriver(ctype, str(e))
    if not isinstance(driver, Driver):
        raise DriverLoadError(
            f"component type {ctype.name}: {where}.create_driver returned {type(driver).__name__}, "
            "which lacks ensure/observe/delete/close"
        )
    return driver
