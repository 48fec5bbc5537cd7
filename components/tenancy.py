"""Department tenancy: a department's namespace (Pod Security `restricted`), its people's roles in it and its
requester account."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import GRADE_LABELS, LEVEL_LABELS, Department
from cityhub_api import labels, people
from cityhub_api.api import GROUP
from cityhub_api.registry import component_types

COMPONENT_REQUEST_GROUP = GROUP
RBAC_GROUP = "rbac.authorization.k8s.io"


def component_request_resources() -> tuple[str, ...]:
    """The plural of every component request kind (MessagingChannel, …), from the registry the operator
    builds its CRDs from, so a new component type is grantable at once."""
    return tuple(t.plural for t in component_types().values())


REQUESTER_ACCOUNT = "component-requester"

POD_SECURITY_LEVEL = "restricted"
"""Pod Security Admission's strictest level: departments deploy their own pods, so none runs privileged,
as root, with host namespaces or added capabilities. `latest`: the rules follow the cluster's version."""


def pod_security_labels() -> dict[str, str]:
    return {
        labels.POD_SECURITY_ENFORCE: POD_SECURITY_LEVEL,
        labels.POD_SECURITY_ENFORCE_VERSION: "latest",
        # Warnings on kubectl apply, and audit annotations, for workload objects (Deployments …) whose
        # pods enforce would refuse: a developer hears about it before the ReplicaSet fails to scale.
        labels.POD_SECURITY_WARN: POD_SECURITY_LEVEL,
        labels.POD_SECURITY_AUDIT: POD_SECURITY_LEVEL,
    }


def requester_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """The department's own component requests: the Role is namespaced, so only its own namespace's."""
    requests = list(component_request_resources())
    if not requests:
        return []
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[COMPONENT_REQUEST_GROUP],
            resources=requests,
            verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
        ),
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[COMPONENT_REQUEST_GROUP], resources=[f"{r}/status" for r in requests], verbs=["get"]
        ),
    ]


@dataclass(frozen=True)
class DepartmentTenancyArgs:
    department: Department
    priority_class: str
    """The PriorityClass the department's workloads run at in the current mode (平/急)."""
    roles: Mapping[str, pulumi.Input[str]]
    """Department role (cityhub_api.people.ROLES) -> its ClusterRole's name: DepartmentRoles.names."""


class DepartmentTenancy(pulumi.ComponentResource):
    """A department's namespace, labelled with its department, level, division code, zone and data grade
    and held to Pod Security `restricted`; the department roles bound to its identity-provider groups
    (admins also to the administrators the stack declares); and a ServiceAccount that may manage the
    department's own component requests and nothing else. Every binding is namespaced, so no department
    can touch another's."""

    namespace_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: DepartmentTenancyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:tenancy:DepartmentTenancy", name, {}, opts)
        dept = args.department
        if set(args.roles) != set(people.ROLES):
            raise ValueError(f"roles must name a ClusterRole for each of {', '.join(people.ROLES)}")
        child = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=dept.namespace,
                labels=namespace_labels(dept, args.priority_class),
                annotations={labels.DISPLAY_NAME: dept.name},
            ),
            opts=child,
        )
        ns = namespace.metadata.name
        meta = labels.common()

        for role in people.ROLES:
            # Named after the ClusterRole it binds: `kubectl get rolebindings` reads as who holds what.
            k8s.rbac.v1.RoleBinding(
                f"{name}-{role}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=args.roles[role], namespace=ns, labels=meta),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group=RBAC_GROUP, kind="ClusterRole", name=args.roles[role]
                ),
                subjects=role_subjects(dept, role),
                opts=child,
            )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-requester",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=REQUESTER_ACCOUNT, namespace=ns, labels=meta),
            opts=child,
        )
        requester = k8s.rbac.v1.Role(
            f"{name}-requester",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=REQUESTER_ACCOUNT, namespace=ns, labels=meta),
            rules=requester_rules(),
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-requester",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=REQUESTER_ACCOUNT, namespace=ns, labels=meta),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group=RBAC_GROUP, kind="Role", name=requester.metadata.name),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=ns)
            ],
            opts=child,
        )
        self.namespace_name = ns
        self.register_outputs({"namespace_name": ns})


def role_subjects(dept: Department, role: str) -> list[k8s.rbac.v1.SubjectArgs]:
    """Who holds a department role: the identity provider's group of that role (people sign in with the
    city's identity) and, for admin, the administrators declared in the stack configuration."""
    subjects = [
        k8s.rbac.v1.SubjectArgs(kind="Group", name=people.kube_group(dept.slug, role), api_group=RBAC_GROUP)
    ]
    if role == "admin":
        subjects += [
            k8s.rbac.v1.SubjectArgs(kind="User", name=people.kube_user(user), api_group=RBAC_GROUP)
            for user in dept.admins
        ]
    return subjects


def namespace_labels(dept: Department, priority_class: str) -> dict[str, str]:
    return {
        **labels.common(),
        labels.TENANT: "department",
        labels.DEPARTMENT: dept.slug,
        labels.LEVEL: LEVEL_LABELS[dept.level],
        labels.DIVISION_CODE: dept.division_code,
        labels.ZONE: dept.zone,
        labels.DATA_GRADE: GRADE_LABELS[dept.data_grade],
        labels.CREDIT_CODE: dept.credit_code,
        labels.EMERGENCY_RESPONDER: str(dept.emergency_responder).lower(),
        labels.PRIORITY_CLASS: priority_class,
        **pod_security_labels(),
    }
