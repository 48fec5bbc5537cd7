"""Admission for component requests across objects: ValidatingAdmissionPolicies (CEL, served by the API
server itself) for what a request's own CRD cannot check because the answer lives elsewhere.

What a policy can see, and so what these rules rely on:
- `namespaceObject`: the request's namespace with the labels DepartmentTenancy sets (tenant, zone, data
  grade), so the department's zone and grade come from the object the API server already holds;
- `params`: one cluster-scoped AdmissionParams object (CRD admission.cityhub.io, defined here) that the
  stack writes from the same configuration it builds everything else from: every department's namespace,
  zone and grade, the private zones, the catalog's offerings and plans, and the identities allowed to
  write request status. A policy cannot look objects up by a name taken from the request (a
  ComponentOffering named by spec.offering, a namespace named in shareWith), so these facts are
  published to it; a missing params object denies every request (fail closed). Params are a CRD, not a
  ConfigMap: kube-apiserver (1.36) stops its informer for a built-in paramKind for good once no binding
  uses it for a moment (kubernetes/kubernetes#130887, #133827), after which every request is denied
  with "no params found" until the API server restarts; a destroy and up of the stack would do that;
- `request.userInfo`: who is writing, for the status rule (RBAC already grants status to the operator
  only; this policy keeps that true even if someone binds a broad role by mistake).

Rules apply when a request is created or its spec changes, never to metadata-only updates, so the
operator can always add and remove its finalizer, even on a request an older catalog admitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import GRADE_LABELS, Department, Zone
from cityhub_api import labels
from cityhub_api.api import GROUP
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.registry import component_types
from components.admission_state import STATE_POLICY, operator_state_policy
from components.tenancy import COMPONENT_REQUEST_GROUP

PARAMS_NAME = "cityhub"
PARAMS_GROUP = "admission.cityhub.io"
PARAMS_VERSION = "v1alpha1"
PARAMS_KIND = "AdmissionParams"
PARAMS_PLURAL = "admissionparams"
REQUEST_POLICY = "cityhub-component-requests"
SHARING_POLICY = "cityhub-component-sharing"
STATUS_POLICY = "cityhub-request-status"
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:cityhub-operator"
"""The operator's ServiceAccount (components/component_operator.py NAME), the default status writer."""
GRADE_RANKS = "{'general': 0, 'important': 1, 'core': 2}"
PARAM_KIND = {"apiVersion": "admission.cityhub.io/v1alpha1", "kind": "AdmissionParams"}


@dataclass(frozen=True)
class RequestType:
    kind: str
    plural: str
    component_type: str
    shares: bool
    """The type has spec.shareWith (departments that may read the component)."""


@dataclass(frozen=True)
class CatalogOffering:
    name: str
    component_type: str
    plans: tuple[str, ...]


def request_types() -> tuple[RequestType, ...]:
    """Every component request type, from the registry the operator builds its CRDs from."""
    return tuple(
        RequestType(
            kind=t.kind,
            plural=t.plural,
            component_type=t.name,
            shares="shareWith" in t.schema.get("properties", {}),
        )
        for t in component_types().values()
    )


def catalog_offerings(documents: Iterable[Mapping[str, Any]]) -> tuple[CatalogOffering, ...]:
    """ComponentOffering manifests (each type's catalog.yaml): the names, types and plans admission checks."""
    return tuple(
        CatalogOffering(
            name=d["metadata"]["name"],
            component_type=d["spec"]["componentType"],
            plans=tuple(p["name"] for p in d["spec"].get("plans", [])),
        )
        for d in documents
    )


def params_spec(
    departments: Iterable[Department],
    zones: Iterable[Zone],
    offerings: Iterable[CatalogOffering],
    types: Iterable[RequestType],
    status_writers: Iterable[str],
) -> dict[str, Any]:
    """The facts the policies check requests against (the AdmissionParams object's spec)."""
    return {
        "departments": {
            d.namespace: {"grade": GRADE_LABELS[d.data_grade], "zone": d.zone} for d in departments
        },
        "privateZones": sorted(z.slug for z in zones if not z.public),
        "offerings": {o.name: {"componentType": o.component_type, "plans": list(o.plans)} for o in offerings},
        "kinds": {t.kind: t.component_type for t in types},
        "statusWriters": sorted(status_writers),
    }


def _strings(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": {"type": "string"}}


def params_crd() -> dict[str, Any]:
    """The AdmissionParams CRD: cluster-scoped, written only by the stack (no department role grants it)."""
    spec_schema = {
        "type": "object",
        "required": ["departments", "privateZones", "offerings", "kinds", "statusWriters"],
        "properties": {
            "departments": {
                "type": "object",
                "description": "Department namespace -> its data grade and zone.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["grade", "zone"],
                    "properties": {
                        "grade": {"type": "string", "enum": ["general", "important", "core"]},
                        "zone": {"type": "string"},
                    },
                },
            },
            "privateZones": _strings("Zones that are not public: the only ones core data may come from."),
            "offerings": {
                "type": "object",
                "description": "Catalog offering name -> its component type and plan names.",
                "additionalProperties": {
                    "type": "object",
                    "required": ["componentType", "plans"],
                    "properties": {"componentType": {"type": "string"}, "plans": _strings("Plan names.")},
                },
            },
            "kinds": {
                "type": "object",
                "description": "Request kind -> component type.",
                "additionalProperties": {"type": "string"},
            },
            "statusWriters": _strings("Usernames that may write request status (the operator)."),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PARAMS_PLURAL}.{PARAMS_GROUP}", "labels": labels.common()},
        "spec": {
            "group": PARAMS_GROUP,
            "scope": "Cluster",
            "names": {
                "kind": PARAMS_KIND,
                "plural": PARAMS_PLURAL,
                "singular": "admissionparams",
                "listKind": f"{PARAMS_KIND}List",
            },
            "versions": [
                {
                    "name": PARAMS_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "What cityhub's admission policies check requests against.",
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        },
    }


def _v(
    expression: str,
    message: str | None = None,
    message_expression: str | None = None,
    reason: str = "Forbidden",
) -> dict[str, Any]:
    rule: dict[str, Any] = {"expression": expression, "reason": reason}
    if message:
        rule["message"] = message
    if message_expression:
        rule["messageExpression"] = message_expression
    return rule


def _grade_label(obj: str) -> str:
    return (
        f"(has({obj}.metadata.labels) && '{labels.DATA_GRADE}' in {obj}.metadata.labels ? "
        f"{obj}.metadata.labels['{labels.DATA_GRADE}'] : '')"
    )


_SPEC_WRITES = [
    # The rules run on what can change their verdict: the spec, and the data-grade label (a label-only
    # update must not slip core data past the grade rules). Other metadata updates (the operator's
    # finalizer, annotations) always pass, so deleting a request admitted under an older catalog never sticks.
    {
        "name": "spec-writes",
        "expression": "request.operation == 'CREATE' || object.spec != oldObject.spec || "
        f"{_grade_label('object')} != {_grade_label('oldObject')}",
    },
    {"name": "not-deleting", "expression": "!has(object.metadata.deletionTimestamp)"},
]

_VARIABLES = [
    {"name": "ranks", "expression": GRADE_RANKS},
    {
        "name": "nsLabels",
        "expression": "has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}",
    },
    {
        "name": "deptGrade",
        "expression": f"'{labels.DATA_GRADE}' in variables.nsLabels ? "
        f"variables.nsLabels['{labels.DATA_GRADE}'] : 'general'",
    },
    {
        "name": "zone",
        "expression": f"'{labels.ZONE}' in variables.nsLabels ? variables.nsLabels['{labels.ZONE}'] : ''",
    },
    {
        "name": "grade",
        "expression": f"has(object.metadata.labels) && '{labels.DATA_GRADE}' in object.metadata.labels ? "
        f"object.metadata.labels['{labels.DATA_GRADE}'] : variables.deptGrade",
    },
    {
        "name": "rank",
        "expression": "variables.grade in variables.ranks ? variables.ranks[variables.grade] : 0",
    },
]
_CATALOG_VARIABLES = [
    {"name": "offering", "expression": "object.spec.offering"},
    {"name": "offered", "expression": "variables.offering in params.spec.offerings"},
    {
        "name": "offeredType",
        "expression": "variables.offered ? params.spec.offerings[variables.offering].componentType : ''",
    },
    {
        "name": "plans",
        "expression": "variables.offered ? params.spec.offerings[variables.offering].plans : []",
    },
    {
        "name": "kindType",
        "expression": "request.kind.kind in params.spec.kinds ? params.spec.kinds[request.kind.kind] : ''",
    },
]


def _resource_rules(plurals: list[str], operations: list[str]) -> dict[str, Any]:
    return {
        "resourceRules": [
            {
                "apiGroups": [COMPONENT_REQUEST_GROUP],
                "apiVersions": ["*"],
                "operations": operations,
                "resources": plurals,
            }
        ]
    }


def request_policy(types: Iterable[RequestType]) -> dict[str, Any]:
    """Where a request may come from, which data it may carry, and that it draws on the catalog."""
    return {
        "failurePolicy": "Fail",
        "paramKind": PARAM_KIND,
        "matchConstraints": _resource_rules(sorted(t.plural for t in types), ["CREATE", "UPDATE"]),
        "matchConditions": _SPEC_WRITES,
        "variables": [*_VARIABLES, *_CATALOG_VARIABLES],
        "validations": [
            _v(
                f"'{labels.TENANT}' in variables.nsLabels && "
                f"variables.nsLabels['{labels.TENANT}'] == 'department'",
                message_expression="'namespace ' + namespaceObject.metadata.name + ' is not a department "
                "namespace: component requests are accepted only in the namespaces the hub stack gives "
                f"departments (label {labels.TENANT}=department)'",
            ),
            _v(
                "variables.grade in variables.ranks",
                message_expression=f"'metadata.labels[{labels.DATA_GRADE}] is ' + variables.grade + "
                "': use general (一般), important (重要) or core (核心)'",
                reason="Invalid",
            ),
            _v(
                "!(variables.grade in variables.ranks) || !(variables.deptGrade in variables.ranks) || "
                "variables.ranks[variables.grade] <= variables.ranks[variables.deptGrade]",
                message_expression="'the request carries ' + variables.grade + ' data but department ' + "
                "namespaceObject.metadata.name + ' is cleared for ' + variables.deptGrade + "
                f"' data only: lower metadata.labels[{labels.DATA_GRADE}] or raise the department\\'s "
                "dataGrade in the stack'",
            ),
            _v(
                "!has(object.spec.visibility) || object.spec.visibility != 'Public' || "
                "variables.grade == 'general'",
                message_expression="'spec.visibility: Public serves the component to every department and to "
                "anyone with its URL; only general (一般) data may be public, this request carries ' + "
                f"variables.grade + ' data: choose Shared with named departments, or (if the data really is "
                f"general) label it metadata.labels[{labels.DATA_GRADE}]=general'",
            ),
            _v(
                "variables.grade != 'core' || variables.zone in params.spec.privateZones",
                message_expression="'core data (核心) may be requested only from a department in a private "
                "zone (' + params.spec.privateZones.join(', ') + '); ' + namespaceObject.metadata.name + "
                "' is in zone ' + variables.zone",
            ),
            _v(
                "variables.offering in params.spec.offerings",
                message_expression="'spec.offering: ' + object.spec.offering + ' is not in the city catalog: "
                "choose one of `kubectl get componentofferings`'",
                reason="Invalid",
            ),
            _v(
                "!variables.offered || variables.offeredType == variables.kindType",
                message_expression="'spec.offering: ' + object.spec.offering + ' offers ' + "
                "variables.offeredType + ', not ' + request.kind.kind + "
                "': choose an offering of that component type'",
                reason="Invalid",
            ),
            _v(
                "!has(object.spec.plan) || object.spec.plan == '' || "
                "!variables.offered || object.spec.plan in variables.plans",
                message_expression="'spec.plan: ' + object.spec.plan + ' is not a plan of offering ' + "
                "object.spec.offering + ' (plans: ' + variables.plans.join(', ') + ')'",
                reason="Invalid",
            ),
        ],
    }


def sharing_policy(types: Iterable[RequestType]) -> dict[str, Any] | None:
    """Sharing only with departments that exist, are not the owner, and are cleared for the data."""
    plurals = sorted(t.plural for t in types if t.shares)
    if not plurals:
        return None
    shared = "object.spec.shareWith"
    known = "(s.department in params.spec.departments)"
    cleared = "variables.ranks[params.spec.departments[s.department].grade]"
    return {
        "failurePolicy": "Fail",
        "paramKind": PARAM_KIND,
        "matchConstraints": _resource_rules(plurals, ["CREATE", "UPDATE"]),
        "matchConditions": [*_SPEC_WRITES, {"name": "shares", "expression": f"has({shared})"}],
        "variables": _VARIABLES,
        "validations": [
            _v(
                f"{shared}.all(s, {known})",
                message_expression=f"'spec.shareWith: no department namespace ' + {shared}.filter(s, "
                f"!{known}).map(s, s.department).join(', ') + ' in this city: name departments by "
                "their namespace (kubectl get ns -l cityhub.io/tenant=department)'",
                reason="Invalid",
            ),
            _v(
                f"{shared}.all(s, s.department != namespaceObject.metadata.name)",
                message="spec.shareWith: a department does not share with itself: remove its own namespace",
                reason="Invalid",
            ),
            _v(
                f"{shared}.all(s, !{known} || {cleared} >= variables.rank)",
                message_expression=f"'spec.shareWith: ' + {shared}.filter(s, {known} && "
                f"{cleared} < variables.rank)"
                ".map(s, s.department).join(', ') + ' may not read ' + variables.grade + "
                "' data (数据分类分级): share only with departments cleared for it'",
            ),
        ],
    }


def status_policy(types: Iterable[RequestType]) -> dict[str, Any]:
    """Only the operator writes a request's status (what departments and dashboards trust)."""
    return {
        "failurePolicy": "Fail",
        "paramKind": PARAM_KIND,
        "matchConstraints": _resource_rules(sorted(f"{t.plural}/status" for t in types), ["UPDATE"]),
        "validations": [
            _v(
                "request.userInfo.username in params.spec.statusWriters",
                message_expression="request.userInfo.username + ' may not write the status of ' + "
                "request.kind.kind + ' requests: only the component operator does'",
            )
        ],
    }


def policies(types: Iterable[RequestType] | None = None) -> dict[str, dict[str, Any]]:
    """Policy name -> ValidatingAdmissionPolicy spec."""
    types = tuple(request_types() if types is None else types)
    plurals = sorted(t.plural for t in types)
    out = {
        REQUEST_POLICY: request_policy(types),
        STATUS_POLICY: status_policy(types),
        # kopf's state annotations: the persistence prefix is the API group (cityhub_operator.handlers)
        STATE_POLICY: operator_state_policy(
            GROUP, PARAM_KIND, _resource_rules(plurals, ["CREATE", "UPDATE"])
        ),
    }
    if sharing := sharing_policy(types):
        out[SHARING_POLICY] = sharing
    return out


def binding_spec(policy: str) -> dict[str, Any]:
    return {
        "policyName": policy,
        "validationActions": ["Deny"],
        "paramRef": {"name": PARAMS_NAME, "parameterNotFoundAction": "Deny"},
    }


def params_object(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{PARAMS_GROUP}/{PARAMS_VERSION}",
        "kind": PARAMS_KIND,
        "metadata": {"name": PARAMS_NAME, "labels": labels.common()},
        "spec": dict(spec),
    }


def manifests(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The params object, policies and bindings as plain manifests (for kubectl and tests); the CRD
    (params_crd) must be established first."""
    api = "admissionregistration.k8s.io/v1"
    meta = labels.common()
    out: list[dict[str, Any]] = [params_object(spec)]
    for name, policy in policies().items():
        out.append(
            {
                "apiVersion": api,
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name, "labels": meta},
                "spec": policy,
            }
        )
        out.append(
            {
                "apiVersion": api,
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name, "labels": meta},
                "spec": binding_spec(name),
            }
        )
    return out


@dataclass(frozen=True)
class AdmissionArgs:
    departments: tuple[Department, ...]
    zones: tuple[Zone, ...]
    offerings: tuple[CatalogOffering, ...]
    """The catalog the stack publishes (catalog_offerings of the ComponentOffering manifests)."""
    status_writers: tuple[str, ...] = (OPERATOR_USER,)
    """Usernames that may write request status: the operator's ServiceAccount."""
    types: tuple[RequestType, ...] = field(default_factory=request_types)


class ComponentAdmission(pulumi.ComponentResource):
    """The AdmissionParams CRD and object and, per rule set, a ValidatingAdmissionPolicy with its binding:
    requests only from department namespaces, grade ceilings, core data only from private zones, offerings
    and plans from the catalog, sharing only with existing departments cleared for the data, status
    written by the operator alone."""

    def __init__(self, name: str, args: AdmissionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:admission:ComponentAdmission", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta = labels.common()
        crd = params_crd()
        definition = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-admission-params-crd",
            metadata={**crd["metadata"], "annotations": {labels.PATCH_FORCE: "true"}},
            spec=crd["spec"],
            opts=child,
        )
        params = k8s.apiextensions.CustomResource(
            f"{name}-admission-params",
            api_version=f"{PARAMS_GROUP}/{PARAMS_VERSION}",
            kind=PARAMS_KIND,
            metadata={"name": PARAMS_NAME, "labels": meta, "annotations": {labels.PATCH_FORCE: "true"}},
            spec=params_spec(args.departments, args.zones, args.offerings, args.types, args.status_writers),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[definition]),
        )
        adm = k8s.admissionregistration.v1
        for policy, spec in policies(args.types).items():
            vap = adm.ValidatingAdmissionPolicy(
                f"{name}-{policy}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=policy, labels=meta),
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[definition]),
            )
            adm.ValidatingAdmissionPolicyBinding(
                f"{name}-{policy}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=policy, labels=meta),
                spec=binding_spec(policy),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[vap, params]),
            )
        self.register_outputs({})
