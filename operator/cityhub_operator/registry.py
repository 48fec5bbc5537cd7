"""From component type to driver: the drivers are imported by the dotted name in their type's schema.

This is the only place that turns a name into a driver, and it does so with importlib, so the operator core
has no import of any driver module (see .importlinter).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from cityhub_operator.driver import Driver
from cityhub_operator.schemas import ComponentType


class DriverLoadError(RuntimeError):
    """A component type's driver cannot be loaded; the message names the type and the module."""


def load_driver(ctype: ComponentType, env: Mapping[str, str]) -> Driver:
    """Import `ctype.driver` and call its `create_driver(env)`."""
    try:
        module = importlib.import_module(ctype.driver)
    except ImportError as e:
        raise DriverLoadError(f"component type {ctype.name}: cannot import {ctype.driver} ({e})") from e
    factory = getattr(module, "create_driver", None)
    if not callable(factory):
        raise DriverLoadError(f"component type {ctype.name}: {ctype.driver} has no create_driver(env)")
    driver = factory(env)
    if not isinstance(driver, Driver):
        raise DriverLoadError(
            f"component type {ctype.name}: {ctype.driver}.create_driver returned {type(driver).__name__}, "
            "which lacks ensure/observe/delete/close"
        )
    return driver
