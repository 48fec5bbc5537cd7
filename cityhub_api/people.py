"""People who sign in to the hub with the city's identity (统一身份认证), and the names that tie the identity
provider to Kubernetes RBAC. One place, so the realm's groups, the API server's claim mapping and the
department roles cannot disagree.

    identity provider (Keycloak realm)      Kubernetes (after the API server's claim mapping)
    user alice                              user  oidc:alice
    group cityhub-jiaotong-admins      group oidc:cityhub-jiaotong-admins      → cityhub:department-admin
    group cityhub-jiaotong-developers  group oidc:cityhub-jiaotong-developers  → cityhub:department-developer
    group cityhub-jiaotong-viewers     group oidc:cityhub-jiaotong-viewers     → cityhub:department-viewer

(ClusterRoles, bound by a RoleBinding in each department's namespace: components/department_roles.py.)

The `oidc:` prefix keeps names from the identity provider apart from Kubernetes' own (a group called
`system:masters` in the realm must never mean cluster-admin).
"""

from __future__ import annotations

OIDC_PREFIX = "oidc:"
CLIENT_ID = "kubernetes"
"""The realm's public client people sign in to the hub with (the tokens' audience)."""
REALM = "city"
ROLES = ("admin", "developer", "viewer")
"""Department roles, from most to least: see components/department_roles.py for what each may do."""
ROLE_NAMES = {"admin": "管理员", "developer": "开发者", "viewer": "只读"}


def idp_group(department: str, role: str) -> str:
    """The identity provider's group of a department's people in `role` (department: its slug)."""
    if role not in ROLES:
        raise ValueError(f"unknown department role {role!r}; one of {', '.join(ROLES)}")
    return f"cityhub-{department}-{role}s"


def kube_group(department: str, role: str) -> str:
    return OIDC_PREFIX + idp_group(department, role)


def kube_user(username: str) -> str:
    return OIDC_PREFIX + username


def parse_group(group: str) -> tuple[str, str] | None:
    """(department, role) of an identity-provider group name, or None when it is not a department's."""
    name = group.removeprefix(OIDC_PREFIX).lstrip("/")
    if not (name.startswith("cityhub-") and name.endswith("s")):
        return None
    for role in ROLES:
        suffix = f"-{role}s"
        if name.endswith(suffix):
            department = name.removeprefix("cityhub-").removesuffix(suffix)
            return (department, role) if department else None
    return None
