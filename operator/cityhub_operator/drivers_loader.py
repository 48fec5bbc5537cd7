"""From component type to driver: the registry imports `component_types.<type>.driver` by name.

This is the only place the operator turns a type into a driver, and the import happens in the registry with
importlib, so the operator core has no import of any driver module (see .importlinter).
"""

from __future__ import annotations

from collections.abc import Mapping

from cityhub_api.registry import DRIVER, ComponentType, RoleMissing
from cityhub_operator.driver import Driver


class DriverLoadError(RuntimeError):
    """A component type's driver cannot be loaded; the message names the type and the module."""


def load_driver(ctype: ComponentType, env: Mapping[str, str]) -> Driver:
    """Import the type's driver module and call its `create_driver(env)`."""
    where = ctype.module_name(DRIVER)
    try:
        module = ctype.load(DRIVER)
    except (ImportError, RoleMissing) as e:
        raise DriverLoadError(f"component type {ctype.name}: cannot import {where} ({e})") from e
    factory = getattr(module, "create_driver", None)
    if not callable(factory):
        raise DriverLoadError(f"component type {ctype.name}: {where} has no create_driver(env)")
    driver = factory(env)
    if not isinstance(driver, Driver):
        raise DriverLoadError(
            f"component type {ctype.name}: {where}.create_driver returned {type(driver).__name__}, "
            "which lacks ensure/observe/delete/close"
        )
    return driver
