"""The identity driver's settings, CITYHUB_IDENTITY_* (the table in component_types/identity/README.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cityhub_api.settings import Env, SettingError
from component_types.identity import keycloak
from component_types.identity.driver import model

DEFAULT_ROLES = ("viewer", "editor", "operator", "admin")


@dataclass(frozen=True)
class IdentitySettings:
    """Where the city's Keycloak is and how the driver uses it."""

    url: str
    """CITYHUB_IDENTITY_URL: where the operator reaches Keycloak, e.g. the front door
    http://identity.cityhub-system.svc.cluster.local:8080."""
    admin_secret: str
    """CITYHUB_IDENTITY_ADMIN_SECRET_FILE (or CITYHUB_IDENTITY_ADMIN_SECRET): the admin client's secret."""
    admin_client_id: str = keycloak.ADMIN_CLIENT_ID
    """CITYHUB_IDENTITY_ADMIN_CLIENT_ID: a service-account client of the master realm with the admin role."""
    realm: str = keycloak.DEFAULT_REALM
    """CITYHUB_IDENTITY_REALM: the city's realm; created when missing."""
    public_url: str = ""
    """CITYHUB_IDENTITY_PUBLIC_URL: the base URL departments' applications use (issuer); default the URL."""
    roles: tuple[str, ...] = DEFAULT_ROLES
    """CITYHUB_IDENTITY_ROLES: the department roles a client may name (comma-separated)."""
    timeout: float = 10.0
    """CITYHUB_IDENTITY_TIMEOUT: seconds to wait for one Keycloak call."""
    concurrency: int = 8
    """CITYHUB_IDENTITY_CONCURRENCY: most Keycloak admin calls in flight at once."""

    @property
    def issuer_base(self) -> str:
        return self.public_url or self.url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentitySettings:
        e = Env(env)
        return cls(
            url=e.url("CITYHUB_IDENTITY_URL", required=True),
            admin_secret=e.secret(
                "CITYHUB_IDENTITY_ADMIN_SECRET", min_length=16, needs="the admin client's secret"
            ),
            admin_client_id=e.text("CITYHUB_IDENTITY_ADMIN_CLIENT_ID", cls.admin_client_id),
            realm=_realm(e),
            public_url=e.url("CITYHUB_IDENTITY_PUBLIC_URL"),
            roles=_roles(e) or DEFAULT_ROLES,
            timeout=e.number("CITYHUB_IDENTITY_TIMEOUT", cls.timeout, exclusive=True),
            concurrency=e.integer("CITYHUB_IDENTITY_CONCURRENCY", cls.concurrency, minimum=1, maximum=256),
        )


def _realm(env: Env) -> str:
    realm = env.text("CITYHUB_IDENTITY_REALM", keycloak.DEFAULT_REALM)
    if not realm.replace("-", "").replace("_", "").isalnum() or realm == "master":
        raise SettingError(
            f"Invalid CITYHUB_IDENTITY_REALM={realm}: needs to be a realm name of letters, digits, - and _, "
            "not master (the driver's own admin realm)"
        )
    return realm


def _roles(env: Env) -> tuple[str, ...]:
    raw = env.raw("CITYHUB_IDENTITY_ROLES") or ""
    roles = tuple(r.strip() for r in raw.split(",") if r.strip())
    if any(not model.ROLE_PATTERN.match(r) for r in roles):
        raise SettingError(
            f"Invalid CITYHUB_IDENTITY_ROLES={raw}: needs to be comma-separated role names of lowercase "
            "letters, digits and -, each starting with a letter (at most 32 characters)"
        )
    return roles
