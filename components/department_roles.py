"""What people of a department (委办局) may do on the hub: three ClusterRoles, defined once per cluster and
bound per department namespace by DepartmentTenancy, and the catalog everyone of a department may read.

    cityhub:department-admin      管理员  the department's tenant owner (like Capsule's): everything a
                                          developer does, plus its own Secrets, exec into its pods,
                                          ServiceAccounts, and granting the three department roles in
                                          its namespace
    cityhub:department-developer  开发者  deploys apps and requests components; pods may mount Secrets,
                                          but Secrets are never read through the API
    cityhub:department-viewer     只读    reads workloads, requests, feedback, events and quotas
    cityhub:catalog-reader                reads the cluster-scoped catalog (ComponentOffering)

The rules are written out (no aggregationRule): the registry knows every request kind when the stack
runs, each role reads whole in `kubectl describe clusterrole`, and nothing depends on the controller
manager filling a role in later. A role only takes effect through a RoleBinding in a department's
namespace, so it never reaches another department's. Cluster-scoped resources cannot be granted that
way; the catalog gets its own ClusterRole and one ClusterRoleBinding.

Left to the stack on purpose (no role writes them): NetworkPolicies (additive, so a department's own
allow would open its zone), ResourceQuotas and LimitRanges (the quota is the city's decision), Roles
(admins grant existing roles only), DaemonSets (one pod on every node is the platform's business).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import Department
from cityhub_api import labels, people
from cityhub_api.api import FEEDBACK_PLURAL, OFFERING_PLURAL
from components.tenancy import COMPONENT_REQUEST_GROUP, RBAC_GROUP, component_request_resources

Rule = dict[str, Any]

CATALOG_READER = "cityhub:catalog-reader"

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
FEEDBACK_VERBS = ["create", "get", "list", "watch", "delete"]
"""A rating is given, read and withdrawn, never edited: a changed opinion is a new ComponentFeedback."""
STREAM_VERBS = ["get", "create"]
"""exec/attach/port-forward: `create` for SPDY, and `get` for the WebSocket upgrade kubectl uses since
1.31 (the API server authorizes the upgrade as a GET)."""


def cluster_role(role: str) -> str:
    """The ClusterRole of a department role (one of cityhub_api.people.ROLES)."""
    if role not in people.ROLES:
        raise ValueError(f"unknown department role {role!r}; one of {', '.join(people.ROLES)}")
    return f"cityhub:department-{role}"


def department_cluster_roles() -> tuple[str, ...]:
    return tuple(cluster_role(r) for r in people.ROLES)


# --- rules, from the least to the most a role may do


def viewer_rules(requests: tuple[str, ...]) -> list[Rule]:
    """Read-only: what runs, what it asked for and how it is doing; never a Secret (credentials)."""
    rules: list[Rule] = [
        # The department's workloads and their logs: 只读 people check on an app without touching it.
        {
            "apiGroups": [""],
            "resources": [
                "pods",
                "pods/log",
                "services",
                "endpoints",
                "configmaps",
                "persistentvolumeclaims",
                "serviceaccounts",
            ],
            "verbs": READ,
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets", "replicasets", "controllerrevisions"],
            "verbs": READ,
        },
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        # What happened (scheduling, quota refusals, the operator's events on requests), in both APIs.
        {"apiGroups": [""], "resources": ["events"], "verbs": READ},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": READ},
        # The limits the department lives in: its quota, container defaults and the zone policies that
        # decide what its pods may reach (read, so a refused connection can be explained).
        {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": READ},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ},
        # The department's ratings of the components it uses.
        {"apiGroups": [COMPONENT_REQUEST_GROUP], "resources": [FEEDBACK_PLURAL], "verbs": READ},
    ]
    if requests:
        # Its component requests and their status (conditions, endpoints): the credentials stay in the
        # connection Secret, which this role cannot read.
        rules.append({"apiGroups": [COMPONENT_REQUEST_GROUP], "resources": list(requests), "verbs": READ})
        rules.append(
            {
                "apiGroups": [COMPONENT_REQUEST_GROUP],
                "resources": [f"{r}/status" for r in requests],
                "verbs": ["get"],
            }
        )
    return rules


def developer_rules(requests: tuple[str, ...]) -> list[Rule]:
    """A viewer who also deploys apps and requests components. Pods may mount Secrets (the connection
    Secrets the operator writes): RBAC checks the pod, not the Secrets it mounts. Reading Secrets through
    the API stays with admins, so credentials do not end up in terminals, dashboards and `-o yaml`; it is
    no wall against a developer set on reading one (a pod that mounts it can print it)."""
    rules = viewer_rules(requests)
    rules += [
        # Deploying an app: its pods, Services, configuration and volumes (storage classes and sizes
        # are held by the department's storage quotas; pods by Pod Security `restricted`).
        {
            "apiGroups": [""],
            "resources": ["pods", "services", "configmaps", "persistentvolumeclaims"],
            "verbs": WRITE,
        },
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": WRITE},
        # `kubectl scale` and `rollout` go through the scale subresource.
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale", "statefulsets/scale"],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": WRITE},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
        # Rating the components the department uses.
        {"apiGroups": [COMPONENT_REQUEST_GROUP], "resources": [FEEDBACK_PLURAL], "verbs": FEEDBACK_VERBS},
    ]
    if requests:
        # Requesting, changing and releasing components. Status stays the operator's (read only; the
        # admission policy cityhub-request-status refuses anyone else's writes as well).
        rules.append(
            {
                "apiGroups": [COMPONENT_REQUEST_GROUP],
                "resources": list(requests),
                "verbs": ["create", "update", "patch", "delete"],
            }
        )
    return rules


def admin_rules(requests: tuple[str, ...]) -> list[Rule]:
    """The department's tenant owner: a developer who also holds its credentials and decides who else
    may work in the namespace."""
    rules = developer_rules(requests)
    rules += [
        # The connection Secrets the operator writes, to hand credentials to systems outside the hub;
        # and the app's own (a registry pull secret, a database password), written by the admin only.
        {"apiGroups": [""], "resources": ["secrets"], "verbs": [*READ, *WRITE]},
        # Debugging its own pods interactively. Admin only: a shell in a pod reads whatever it mounts
        # (which the admin may read anyway) and changes a running app outside its declared spec.
        {
            "apiGroups": [""],
            "resources": ["pods/exec", "pods/attach", "pods/portforward"],
            "verbs": STREAM_VERBS,
        },
        # Apps that call the Kubernetes API run as their own ServiceAccount, bound to a department role.
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": WRITE},
        # Who may work in the namespace: bindings of the department roles to people, groups and the
        # department's ServiceAccounts, and the Roles already there (component-requester) to read.
        {"apiGroups": [RBAC_GROUP], "resources": ["rolebindings"], "verbs": [*READ, *WRITE]},
        {"apiGroups": [RBAC_GROUP], "resources": ["roles"], "verbs": READ},
        # `bind` names the three department roles only. Any other role the API server lets an admin bind
        # only when the admin already holds every permission in it (component-requester, say), never
        # cluster-admin, admin or the operator's roles: granting cannot escalate.
        {
            "apiGroups": [RBAC_GROUP],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": list(department_cluster_roles()),
        },
    ]
    return rules


RULES = {"admin": admin_rules, "developer": developer_rules, "viewer": viewer_rules}


def role_rules(role: str) -> list[Rule]:
    """The rules of a department role, with every component request kind the registry knows."""
    if role not in RULES:
        raise ValueError(f"unknown department role {role!r}; one of {', '.join(people.ROLES)}")
    return RULES[role](component_request_resources())


def catalog_rules() -> list[Rule]:
    # The catalog (一本账) is cluster-scoped, so no namespaced binding can grant it; it holds offerings
    # and plans, nothing secret, and the stack alone writes it.
    return [{"apiGroups": [COMPONENT_REQUEST_GROUP], "resources": [OFFERING_PLURAL], "verbs": READ}]


def catalog_subjects(departments: tuple[Department, ...]) -> list[dict[str, str]]:
    """Everyone of a department: its three identity-provider groups and its declared administrators.
    Not `system:authenticated`: someone who signs in but belongs to no department sees no catalog."""
    subjects = [
        {"kind": "Group", "name": people.kube_group(d.slug, role), "apiGroup": RBAC_GROUP}
        for d in departments
        for role in people.ROLES
    ]
    users = sorted({people.kube_user(name) for d in departments for name in d.admins})
    subjects += [{"kind": "User", "name": user, "apiGroup": RBAC_GROUP} for user in users]
    return subjects


@dataclass(frozen=True)
class DepartmentRolesArgs:
    departments: tuple[Department, ...]
    """The departments on this cluster: everyone of theirs may read the catalog."""


class DepartmentRoles(pulumi.ComponentResource):
    """The department roles (admin, developer, viewer) as ClusterRoles, and the catalog reader bound to
    every department's people. DepartmentTenancy binds the roles in each department's namespace."""

    names: dict[str, pulumi.Output[str]]
    """Department role (people.ROLES) -> its ClusterRole's name, for DepartmentTenancyArgs.roles."""

    def __init__(
        self, name: str, args: DepartmentRolesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:tenancy:DepartmentRoles", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.names = {}
        for role in people.ROLES:
            created = k8s.rbac.v1.ClusterRole(
                f"{name}-department-{role}",
                metadata={
                    "name": cluster_role(role),
                    "labels": labels.common(),
                    "annotations": {labels.DISPLAY_NAME: people.ROLE_NAMES[role]},
                },
                rules=role_rules(role),
                opts=child,
            )
            self.names[role] = created.metadata.name
        reader = k8s.rbac.v1.ClusterRole(
            f"{name}-catalog-reader",
            metadata={"name": CATALOG_READER, "labels": labels.common()},
            rules=catalog_rules(),
            opts=child,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-catalog-reader",
            metadata={"name": CATALOG_READER, "labels": labels.common()},
            role_ref={"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": reader.metadata.name},
            subjects=catalog_subjects(args.departments),
            opts=child,
        )
        self.register_outputs({"names": self.names})
