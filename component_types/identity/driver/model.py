"""What an IdentityClient request means in Keycloak: names, representations and checks, without I/O.

realm       one for the whole city (CITYHUB_IDENTITY_REALM, default city)
group       one top-level group per department, named after its namespace
role        realm role <department>:<role> for each department role a client names
client      client_id <department>.<name> (request names are DNS labels, so '.' cannot be ambiguous);
            full scope off, so tokens carry only the realm roles mapped to the client's scope
mappers     cityhub-audience (aud = client_id), cityhub-client-department (claim client_department: the
            department owning the client, whoever signs in),
            cityhub-groups (claim groups: the department's group)
service     a confidential client's service account is in the department's group and holds exactly
account     the client's department roles: its client-credentials tokens carry them
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cityhub_operator.driver import Request

ATTR_REQUEST = "cityhub.request"
ATTR_UID = "cityhub.uid"
ATTR_DEPARTMENT = "cityhub.department"
MAPPER_PREFIX = "cityhub-"
# Always a client's default scopes: `basic` gives sub, `roles` the realm_access claim our roles travel in.
BASE_SCOPES = ("basic", "roles", "acr", "web-origins")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
CLIENT_FIELDS = (
    "name",
    "description",
    "enabled",
    "protocol",
    "publicClient",
    "serviceAccountsEnabled",
    "standardFlowEnabled",
    "implicitFlowEnabled",
    "directAccessGrantsEnabled",
    "fullScopeAllowed",
    "clientAuthenticatorType",
)


def client_id(request: Request) -> str:
    return f"{request.department}.{request.name}"


def role_name(department: str, role: str) -> str:
    return f"{department}:{role}"


def is_confidential(request: Request) -> bool:
    return request.spec.get("type", "confidential") != "public"


def redirect_uri_problem(uri: str) -> str | None:
    """Why a redirect URI cannot be registered, or None. The same rules as the CRD's CEL (defence in depth:
    the CRD may be older than the operator, or the request written around admission)."""
    if "*" in uri:
        return "has a wildcard (*): list each redirect URI in full"
    if "#" in uri:
        return "has a fragment (#…): remove it, OIDC redirect URIs may not have one"
    if any(c.isspace() for c in uri):
        return "contains whitespace"
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https:// URL"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return f"uses plain http for {host}: use https:// (http:// only for localhost, 127.0.0.1 or [::1])"
    return None


def spec_problems(request: Request, known_roles: Sequence[str]) -> list[str]:
    """Everything wrong with the request's spec that Keycloak would accept but the city does not."""
    out = []
    for i, uri in enumerate(request.spec.get("redirectUris") or []):
        problem = redirect_uri_problem(str(uri))
        if problem:
            out.append(f"spec.redirectUris[{i}]: redirect URI {uri} {problem}")
    if not is_confidential(request) and not request.spec.get("redirectUris"):
        out.append("spec.redirectUris: a public client needs at least one redirect URI")
    for role in request.spec.get("roles") or []:
        if not ROLE_PATTERN.match(str(role)) or role not in known_roles:
            out.append(
                f"spec.roles: unknown department role {role!r}; the city's department roles are "
                f"{', '.join(known_roles)}"
            )
    return out


def desired_client(request: Request) -> dict[str, Any]:
    """The client representation the request asks for (fields the driver owns; the rest stay Keycloak's)."""
    confidential = is_confidential(request)
    uris = sorted(str(u) for u in request.spec.get("redirectUris") or [])
    limits = request.limits
    attributes = {
        ATTR_REQUEST: request.key,
        ATTR_UID: request.uid,
        ATTR_DEPARTMENT: request.department,
        "access.token.lifespan": str(limits.get("accessTokenLifespan", "")),
        "client.session.max.lifespan": str(limits.get("sessionMaxLifespan", "")),
        "pkce.code.challenge.method": "" if confidential else "S256",
        "post.logout.redirect.uris": "+" if uris else "",
    }
    return {
        "clientId": client_id(request),
        "name": f"{request.department}/{request.name}",
        "description": f"IdentityClient {request.key} (managed by cityhub; edits are reverted)",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": not confidential,
        "serviceAccountsEnabled": confidential,
        "standardFlowEnabled": bool(uris),
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "fullScopeAllowed": False,
        "clientAuthenticatorType": "client-secret",
        "redirectUris": uris,
        "webOrigins": ["+"] if uris else [],
        "attributes": attributes,
    }


def client_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Names of the owned fields where the client in Keycloak differs from the wanted one."""
    out = [f for f in CLIENT_FIELDS if have.get(f) != want.get(f)]
    for f in ("redirectUris", "webOrigins"):
        if sorted(have.get(f) or []) != sorted(want.get(f) or []):
            out.append(f)
    have_attrs = have.get("attributes") or {}
    for k, v in (want.get("attributes") or {}).items():
        if (have_attrs.get(k) or "") != v:
            out.append(f"attributes.{k}")
    return out


def desired_mappers(request: Request) -> dict[str, dict[str, Any]]:
    """The client's own protocol mappers, by name."""
    claim = {
        "access.token.claim": "true",
        "id.token.claim": "true",
        "userinfo.token.claim": "true",
        "introspection.token.claim": "true",
    }
    mappers = [
        {
            "name": f"{MAPPER_PREFIX}audience",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.client.audience": client_id(request),
                "access.token.claim": "true",
                "id.token.claim": "false",
                "introspection.token.claim": "true",
            },
        },
        {
            # The department that owns the client (the authorized party), not the signed-in person's: it is
            # the same for whoever signs in, so it is not called `department` (an app must not mistake it for
            # the person's). A person's department memberships are in `groups`.
            "name": f"{MAPPER_PREFIX}client-department",
            "protocolMapper": "oidc-hardcoded-claim-mapper",
            "config": {
                "claim.name": "client_department",
                "claim.value": request.department,
                "jsonType.label": "String",
                **claim,
            },
        },
        {
            "name": f"{MAPPER_PREFIX}groups",
            "protocolMapper": "oidc-group-membership-mapper",
            "config": {"claim.name": "groups", "full.path": "false", **claim},
        },
    ]
    return {m["name"]: {**m, "protocol": "openid-connect"} for m in mappers}


def mapper_differs(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    if have.get("protocolMapper") != want["protocolMapper"]:
        return True
    config = have.get("config") or {}
    return any(config.get(k) != v for k, v in want["config"].items())


def issuer(public_url: str, realm: str) -> str:
    return f"{public_url.rstrip('/')}/realms/{realm}"


def endpoints(public_url: str, realm: str, request: Request) -> dict[str, str]:
    """Where a department's application talks OIDC; fixed paths under the issuer, so no lookup is needed."""
    iss = issuer(public_url, realm)
    oidc = f"{iss}/protocol/openid-connect"
    return {
        "client_id": client_id(request),
        "issuer": iss,
        "discovery_url": f"{iss}/.well-known/openid-configuration",
        "token_endpoint": f"{oidc}/token",
        "authorization_endpoint": f"{oidc}/auth",
        "jwks_uri": f"{oidc}/certs",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "introspection_endpoint": f"{oidc}/token/introspect",
        "end_session_endpoint": f"{oidc}/logout",
        "roles": ",".join(role_name(request.department, r) for r in sorted(request.spec.get("roles") or [])),
    }
