"""The identity driver (统一身份认证): IdentityClient requests as OIDC clients on the city's Keycloak.
The operator calls `create_driver(env)`; the modules, by concern:

    settings.py          IdentitySettings, CITYHUB_IDENTITY_* (read by create_driver)
    identity_driver.py   IdentityDriver: ensure, observe, delete against Keycloak's admin API
    model.py             what a request means in Keycloak (names, representations, checks; no I/O)
    admin.py             the admin REST client
    slots.py             admin-call slots, handed out oldest operation first
    probe.py             the black-box probe with a department's Secret
    unconfigured.py      the stand-in when no identity provider is configured
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cityhub_api.settings import Env
from component_types.identity.driver.identity_driver import IdentityDriver
from component_types.identity.driver.settings import IdentitySettings
from component_types.identity.driver.unconfigured import UnconfiguredIdentityDriver

__all__ = ["create_driver"]

log = logging.getLogger("component_types.identity.driver")


def create_driver(env: Mapping[str, str]) -> IdentityDriver | UnconfiguredIdentityDriver:
    if Env(env).raw("CITYHUB_IDENTITY_URL") is None:
        log.warning("CITYHUB_IDENTITY_URL is not set: IdentityClient requests will not be served")
        return UnconfiguredIdentityDriver()
    return IdentityDriver(IdentitySettings.from_env(env))
