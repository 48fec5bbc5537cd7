"""People of the city's identity who sign in to the hub (统一身份登记): the realm's sign-in client, one group
per department and role, and (for the embedded default and tests) adding a person.

    ensure_sign_in(settings, departments)   the realm, its public client `kubernetes` (password and code
                                            flows; its ID tokens carry `groups` and have audience
                                            `kubernetes`) and the groups cityhub_api.people names
    add_person(settings, user, password, department, role)   a user in the department's group of that role

`settings` are the identity driver's CITYHUB_IDENTITY_* (URL, admin client, its secret file, realm). The
Keycloak admin API is called with the standard library only, so the CLI loads no backend client library;
the operator's driver does the same kind of calls with aiohttp for departments' IdentityClients.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from cityhub_api import people
from cityhub_api.settings import Env
from component_types.identity import keycloak

TIMEOUT = 10.0


class DirectoryError(RuntimeError):
    """Keycloak refused or could not be reached; the message says what and what to do."""


class Admin:
    """The master realm's admin client (client-credentials grant), with the standard library."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        env = Env(settings)
        self.url = env.url("CITYHUB_IDENTITY_URL", required=True)
        self.realm = env.text("CITYHUB_IDENTITY_REALM", keycloak.DEFAULT_REALM)
        self.client_id = env.text("CITYHUB_IDENTITY_ADMIN_CLIENT_ID", keycloak.ADMIN_CLIENT_ID)
        self.secret = env.secret("CITYHUB_IDENTITY_ADMIN_SECRET", min_length=16, needs="the admin secret")
        self._token = ""

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Any:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                data = resp.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            if e.code == 404 and method == "GET":
                return None
            detail = e.read().decode(errors="replace")[:300]
            raise DirectoryError(f"Keycloak {method} {url}: {e.code} {detail}") from e
        except OSError as e:
            raise DirectoryError(f"Keycloak at {self.url} unreachable: {e}") from e

    def token(self) -> str:
        if not self._token:
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.secret,
                }
            ).encode()
            reply = self._request(
                "POST",
                f"{self.url}/realms/master/protocol/openid-connect/token",
                form,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            self._token = str(reply["access_token"])
        return self._token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """`path` under /admin/realms/<realm> (or /admin/realms itself when it starts with `/realms`)."""
        base = f"{self.url}/admin" if path.startswith("/realms") else f"{self.url}/admin/realms/{self.realm}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"}
        return self._request(method, base + path, data, headers)


def sign_in_client() -> dict[str, Any]:
    """The realm's client people sign in to the hub with: public (a CLI keeps no secret), the password
    grant for `cityhub login` and the code flow for browsers, ID tokens carrying the person's groups."""
    return {
        "clientId": people.CLIENT_ID,
        "name": "城市智能中枢 Kubernetes (cityhub login)",
        "publicClient": True,
        "directAccessGrantsEnabled": True,
        "standardFlowEnabled": True,
        "redirectUris": ["http://localhost:8000/*", "http://127.0.0.1:8000/*"],
        "protocol": "openid-connect",
        "protocolMappers": [
            {
                "name": "groups",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-group-membership-mapper",
                "config": {
                    "claim.name": "groups",
                    "full.path": "false",
                    "id.token.claim": "true",
                    "access.token.claim": "true",
                    "userinfo.token.claim": "true",
                },
            }
        ],
    }


def ensure_sign_in(settings: Mapping[str, str], departments: Iterable[str]) -> None:
    """The realm, its sign-in client and every department's role groups (idempotent)."""
    admin = Admin(settings)
    if admin.call("GET", f"/realms/{admin.realm}") is None:
        try:
            admin.call("POST", "/realms", {"realm": admin.realm, **keycloak.REALM_DEFAULTS})
        except DirectoryError as e:
            if " 409 " not in str(e):
                raise
    clients = admin.call("GET", f"/clients?clientId={people.CLIENT_ID}") or []
    if not clients:
        admin.call("POST", "/clients", sign_in_client())
    existing = {g["name"] for g in admin.call("GET", "/groups?max=10000&briefRepresentation=true") or []}
    for department in departments:
        for role in people.ROLES:
            name = people.idp_group(department, role)
            if name not in existing:
                admin.call("POST", "/groups", {"name": name})


def _group_id(admin: Admin, name: str) -> str:
    found = admin.call("GET", f"/groups?search={urllib.parse.quote(name)}&exact=true") or []
    for group in found:
        if group.get("name") == name:
            return str(group["id"])
    raise DirectoryError(f"group {name} does not exist: is the department in the stack (cityhub up)?")


def add_person(
    settings: Mapping[str, str], username: str, password: str, department: str | None, role: str
) -> None:
    """A user with `password`, member of the department's `role` group (none: in no department)."""
    admin = Admin(settings)
    quoted = urllib.parse.quote(username)
    found = admin.call("GET", f"/users?username={quoted}&exact=true") or []
    if found:
        user_id = str(found[0]["id"])
    else:
        admin.call(
            "POST",
            "/users",
            {
                "username": username,
                "enabled": True,
                "emailVerified": True,
                "email": f"{username}@city.invalid",
                "firstName": username,
                "lastName": "-",
                "requiredActions": [],
            },
        )
        user_id = str((admin.call("GET", f"/users?username={quoted}&exact=true") or [{}])[0]["id"])
    admin.call(
        "PUT", f"/users/{user_id}/reset-password", {"type": "password", "value": password, "temporary": False}
    )
    if department is not None:
        group = _group_id(admin, people.idp_group(department, role))
        admin.call("PUT", f"/users/{user_id}/groups/{group}")
