"""The ValidatingAdmissionPolicies (CEL, served by the API server itself) for component requests: where a
request may come from, which data it may carry, that it draws on the catalog, whom it is shared with, and
who writes its status; plus the operator-state policy of admission_state.py. components/admission.py
installs them.

What a policy can see, and so what these rules rely on:
- `namespaceObject`: the request's namespace with the labels DepartmentTenancy sets (tenant, zone, data
  grade), so the department's zone and grade come from the object the API server already holds;
- `params`: the cluster-scoped AdmissionParams object (admission_params.py) the stack writes;
- `request.userInfo`: who is writing, for the status rule (RBAC already grants status to the operator
  only; this policy keeps that true even if someone binds a broad role by mistake).

Rules apply when a request is created or its spec changes, never to metadata-only updates, so the
operator can always add and remove its finalizer, even on a request an older catalog admitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cityhub_api import labels
from cityhub_api.api import GROUP
from components.admission_params import PARAM_KIND, PARAMS_NAME, RequestType, request_types
from components.admission_state import STATE_POLICY, operator_state_policy
from components.tenancy import COMPONENT_REQUEST_GROUP

REQUEST_POLICY = "cityhub-component-requests"
SHARING_POLICY = "cityhub-component-sharing"
STATUS_POLICY = "cityhub-request-status"
GRADE_RANKS = "{'general': 0, 'important': 1, 'core': 2}"


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
