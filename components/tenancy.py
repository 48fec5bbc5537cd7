"""Department tenancy: a department's namespace, its members' read access and its requester account."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import GRADE_LABELS, LEVEL_LABELS, Department
from cityhub_api import labels
from cityhub_api.api import GROUP
from cityhub_api.registry import component_types

COMPONENT_REQUEST_GROUP = GROUP


def component_request_resources() -> tuple[str, ...]:
    """The plural of every component request kind (MessagingChannel, …), from the registry the operator
    builds its CRDs from, so a new component type is grantable at once."""
    return tuple(t.plural for t in component_types().values())


REQUESTER_ACCOUNT = "component-requester"
MEMBER_ROLE = "department-member"


def members_group(slug: str) -> str:
    """The identity-provider group whose users are the department's members."""
    return f"cityhub:department:{slug}"


def member_read_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Members see their workloads, quotas and component requests but not Secrets: read access must not
    leak credentials (component credentials land in Secrets)."""
    rules = [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[""],
            resources=[
                "pods",
                "pods/log",
                "services",
                "endpoints",
                "configmaps",
                "persistentvolumeclaims",
                "events",
                "resourcequotas",
                "limitranges",
            ],
            verbs=["get", "list", "watch"],
        ),
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["apps"],
            resources=["deployments", "statefulsets", "replicasets", "daemonsets"],
            verbs=["get", "list", "watch"],
        ),
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["batch"], resources=["jobs", "cronjobs"], verbs=["get", "list", "watch"]
        ),
    ]
    if requests := component_request_resources():
        rules.append(
            k8s.rbac.v1.PolicyRuleArgs(
                api_groups=[COMPONENT_REQUEST_GROUP], resources=list(requests), verbs=["get", "list", "watch"]
            )
        )
    return rules


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


class DepartmentTenancy(pulumi.ComponentResource):
    """A department's namespace, labelled with its department, level, division code, zone and data grade;
    a read-only Role for its members (an identity-provider group); and a ServiceAccount that may manage
    the department's own component requests and nothing else. Everything is namespaced, so no department
    can touch another's."""

    namespace_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: DepartmentTenancyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cityhub:tenancy:DepartmentTenancy", name, {}, opts)
        dept = args.department
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

        role = k8s.rbac.v1.Role(
            f"{name}-member",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=MEMBER_ROLE, namespace=ns, labels=meta),
            rules=member_read_rules(),
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-member",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=MEMBER_ROLE, namespace=ns, labels=meta),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="Group", name=members_group(dept.slug), api_group="rbac.authorization.k8s.io"
                )
            ],
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
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=requester.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=ns)
            ],
            opts=child,
        )
        self.namespace_name = ns
        self.register_outputs({"namespace_name": ns})


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
    }
