"""The sensing driver (城市泛在感知接入): SensorFleets on the MQTT gateway. See fleets.py for how a fleet maps
onto the gateway, and the folder's README.md for what a department gets."""

from __future__ import annotations

from collections.abc import Mapping

from component_types.sensing.driver.fleets import SensingDriver
from component_types.sensing.driver.settings import SensingSettings

__all__ = ["SensingDriver", "SensingSettings", "create_driver"]


def create_driver(env: Mapping[str, str]) -> SensingDriver:
    """The driver factory the operator core calls (through the registry)."""
    return SensingDriver(SensingSettings.from_env(env))
