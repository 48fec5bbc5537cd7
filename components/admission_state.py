"""The operator's own state on a request is the operator's to write.

kopf keeps its state on each request in annotations under the API group (hub.cityhub.io/…: the spec it last
handled, each handler's progress). A department owns its requests and could otherwise write them: a forged
"handler ensure already succeeded" makes kopf skip the request, which then never gets provisioned and never
gets a condition saying why. The operator also reads forged values safely (cityhub_operator.persistence);
this policy refuses them at the door, with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATE_POLICY = "cityhub-operator-state"


def operator_state_policy(
    prefix: str, param_kind: Mapping[str, str], resource_rules: dict[str, Any]
) -> dict[str, Any]:
    """Only the operator (params.spec.statusWriters) adds or changes annotations under `prefix`/ on the
    requests `resource_rules` match."""
    unchanged = (
        "request.operation == 'UPDATE' && has(oldObject.metadata.annotations) && "
        "k in oldObject.metadata.annotations && "
        "oldObject.metadata.annotations[k] == object.metadata.annotations[k]"
    )
    return {
        "failurePolicy": "Fail",
        "paramKind": dict(param_kind),
        "matchConstraints": resource_rules,
        "matchConditions": [
            {"name": "not-deleting", "expression": "!has(object.metadata.deletionTimestamp)"}
        ],
        "validations": [
            {
                "expression": "request.userInfo.username in params.spec.statusWriters || "
                "!has(object.metadata.annotations) || "
                f"object.metadata.annotations.all(k, !k.startsWith('{prefix}/') || ({unchanged}))",
                "message": f"metadata.annotations: keys under {prefix}/ hold the component operator's state "
                "and only the operator writes them; remove them from your manifest",
                "reason": "Forbidden",
            }
        ],
    }
