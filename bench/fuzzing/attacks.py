"""Request-level attacks: what a department could ask for that the schema alone cannot refuse (limits above
the plan and beyond the backends' stores, offerings and plans that do not exist or are another type's, shares
with itself, unknown, non-department and uncleared departments, requests outside department namespaces,
forged operator state in metadata), the updates that must not pass (immutable fields, a raised data grade),
and the registry of every family the generator draws from (the schema-driven ones are in mutations.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from cityhub_api import units
from cityhub_api.api import FINALIZER, GROUP
from cityhub_api.registry import component_type_by_kind
from fuzzing.mutations import (
    Mutation,
    Target,
    drop_required,
    duplicate,
    enum_value,
    out_of_range,
    wrong_type,
)
from fuzzing.seeds import GRADE_LABEL, fields, offering_of, plans_of, request_kinds

NOT_DEPARTMENTS = ("default", "kube-system", "kube-public")
HAZARDS: list[tuple[str, tuple[str | int, ...], str]] = [
    # Values the schema lets through into fields the backends or the operator's own writes take: each run
    # starts with them, so a short run meets them too.
    ("InferenceEndpoint", ("spec", "modelUri"), "traffic-flow/1/model\x00.joblib"),
    ("InferenceEndpoint", ("spec", "modelUri"), "traffic-flow//1/./model.joblib"),
    ("InferenceEndpoint", ("spec", "modelUri"), "traffic-flow/1/model.joblib/"),
    ("InferenceEndpoint", ("spec", "modelVersion"), "1.."),
    ("MessagingChannel", ("spec", "secretName"), "conn..s"),
    ("MapLayer", ("spec", "secretName"), "a" * 64 + ".s"),
    ("SensorFleet", ("spec", "secretName"), "conn.-s"),
    ("IdentityClient", ("spec", "redirectUris", 0), "https://app.city.gov.cn\ufeff/callback"),
    ("IdentityClient", ("spec", "redirectUris", 0), "https://app.city.gov.cn/callback?next=\x00"),
    ("MessagingChannel", ("spec", "shareWith", 0, "purpose"), "\x00\u202e\x1b[2J"),
    ("MapLayer", ("spec", "shareWith", 0, "purpose"), "'); DROP TABLE cityhub_maps.layers; --"),
]
BACKEND_LIMITS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # Within the plan, beyond what the backend or the department's allowance holds: refused by the driver
    # after it may have made something (the account, a stream), which must then be gone.
    "MessagingChannel": [
        (
            "storage memory, 1Gi: past the department's memory store (256Mi)",
            {"storage": "memory", "limits": {"maxBytes": "1Gi"}},
        ),
        (
            "plan large, 8Gi: the department's whole file store",
            {"plan": "large", "limits": {"maxBytes": "8Gi"}},
        ),
    ],
    "SensorFleet": [
        (
            "plan large, 20Gi of telemetry: past the gateway's store",
            {"plan": "large", "limits": {"maxBytes": "20Gi"}},
        ),
    ],
    "InferenceEndpoint": [
        (
            "cpu-standard, 8Gi x 16 replicas: past the department's memory quota",
            {"plan": "cpu-standard", "replicas": 16, "limits": {"memory": "8Gi"}},
        ),
    ],
}


# -- semantic families ----------------------------------------------------------------------------------


def over_plan(t: Target) -> str:
    ctype = component_type_by_kind(t.kind)
    spec = t.spec()
    if t.kind == "SensorFleet" and t.rng.random() < 0.3:
        plan = spec.get("plan") or "standard"
        n = t.pick([101, 501, 1000])
        spec["devices"] = [f"dev-{i:04d}" for i in range(n)]
        spec.get("limits", {}).pop("maxDevices", None)
        return f"spec.devices: {n} devices on plan {plan} without limits.maxDevices"
    if t.kind == "InferenceEndpoint" and t.rng.random() < 0.4:
        plan = t.pick(["gpu-standard", "gpu-large"])
        replicas = t.pick([1, 2, 3, 16])
        spec.update(plan=plan, replicas=replicas, limits={"gpu": 1 if plan == "gpu-standard" else 2})
        return f"spec.plan {plan} x replicas {replicas} against {t.namespace}'s GPU quota"
    if t.kind in BACKEND_LIMITS and t.rng.random() < 0.3:
        detail, change = t.pick(BACKEND_LIMITS[t.kind])
        for key, value in copy.deepcopy(change).items():
            spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
        return detail
    if not ctype.limits:
        spec["plan"] = "premium"
        return "spec.plan premium: the offering has no such plan (maps has no limits)"
    plans = plans_of(t.kind)
    plan_name = t.pick(sorted(plans))
    limit = t.pick(sorted(ctype.limits))
    kind = ctype.limits[limit]
    bound_raw = (plans[plan_name].get("limits") or {}).get(limit)
    bound = units.parse(kind, bound_raw) if bound_raw is not None else 10**12
    step = t.pick([1, 1, bound, 10**15])
    value: Any = bound + step
    if kind == "duration":
        value = f"{min(value, 999_999_999)}s"
    spec["plan"] = plan_name
    spec.setdefault("limits", {})[limit] = value
    return f"spec.limits.{limit}={value} on plan {plan_name} (at most {bound_raw})"


def offering(t: Target) -> str:
    spec = t.spec()
    others = [offering_of(k) for k in request_kinds() if k != t.kind]
    plans_elsewhere = sorted(
        {p for k in request_kinds() if k != t.kind for p in plans_of(k)} - set(plans_of(t.kind))
    )
    choice = t.rng.randrange(6)
    if choice == 0:
        spec["offering"] = t.pick(["no-such-offering", offering_of(t.kind) + "2", "a"])
        return f"spec.offering {spec['offering']!r} does not exist"
    if choice == 1:
        spec["offering"] = t.pick(others)
        return f"spec.offering {spec['offering']!r} is of another type"
    if choice == 2:
        spec["plan"] = t.pick(["no-such-plan", "free", "unlimited"])
        return f"spec.plan {spec['plan']!r} is no plan of the offering"
    if choice == 3 and plans_elsewhere:
        spec["plan"] = t.pick(plans_elsewhere)
        return f"spec.plan {spec['plan']!r} is another offering's plan"
    if choice == 4:
        spec["plan"] = ""
        return "spec.plan empty (the offering's default)"
    spec["offering"] = offering_of(t.kind).upper()
    return f"spec.offering {spec['offering']!r} in capitals"


def share(t: Target) -> str:
    spec = t.spec()
    if "shareWith" not in (component_type_by_kind(t.kind).schema.get("properties") or {}):
        spec["shareWith"] = [{"department": t.other_department()}]
        return "spec.shareWith on a kind without sharing (pruned)"
    if t.kind == "MapLayer":
        spec["visibility"] = "Shared"
    meta = t.body["metadata"]
    choice = t.rng.randrange(7)
    if choice == 0:
        spec["shareWith"] = [{"department": t.namespace}]
        return "spec.shareWith its own department"
    if choice == 1:
        spec["shareWith"] = [{"department": t.pick(["dept-nope", "dept-fuzz-b", "dept-yingji-x"])}]
        return f"spec.shareWith {spec['shareWith'][0]['department']}: no such department"
    if choice == 2:
        spec["shareWith"] = [{"department": t.pick(NOT_DEPARTMENTS)}]
        return f"spec.shareWith {spec['shareWith'][0]['department']}: not a department namespace"
    if choice == 3:
        carried = t.pick(["important", "core"])
        meta.setdefault("labels", {})[GRADE_LABEL] = carried
        reader = t.pick([n for n, g in t.grades.items() if g == "general" and n != t.namespace])
        spec["shareWith"] = [{"department": reader}]
        return f"{carried} data shared with {reader} (cleared for general)"
    if choice == 4:
        meta.get("labels", {}).pop(GRADE_LABEL, None)
        spec["shareWith"] = [{"department": t.other_department()}]
        reader = spec["shareWith"][0]["department"]
        return f"no grade label ({t.grades[t.namespace]} data of {t.namespace}) shared with {reader}"
    if choice == 5:
        spec["shareWith"] = [{"department": n, "purpose": "all"} for n in t.namespaces if n != t.namespace]
        return "spec.shareWith every other department"
    if t.kind == "MapLayer":
        spec["visibility"] = "Public"
        spec.pop("shareWith", None)
        meta.setdefault("labels", {})[GRADE_LABEL] = t.pick(["important", "core", "general"])
        return f"spec.visibility Public with {meta['labels'][GRADE_LABEL]} data"
    spec["shareWith"] = [{"department": t.other_department(), "purpose": "x" * 257}]
    return "spec.shareWith[0].purpose 257 characters"


def namespace(t: Target) -> str:
    ns = t.pick(NOT_DEPARTMENTS)
    t.body["metadata"]["namespace"] = ns
    return f"metadata.namespace {ns}: not a department"


def metadata(t: Target) -> str:
    meta = t.body["metadata"]
    labels = meta.setdefault("labels", {})
    annotations = meta.setdefault("annotations", {})
    choice = t.rng.randrange(8)
    if choice == 0:
        labels[GRADE_LABEL] = t.pick(["secret", "CORE", "核心", "top"])
        return f"metadata.labels[{GRADE_LABEL}] {labels[GRADE_LABEL]!r}"
    if choice == 1:
        labels[GRADE_LABEL] = "core"
        return f"metadata.labels[{GRADE_LABEL}] core in {t.namespace} ({t.grades[t.namespace]})"
    if choice == 2:
        annotations[f"{GROUP}/last-handled-configuration"] = json.dumps({"spec": t.spec()})
        return "kopf's diff-base annotation forged with the request's own spec"
    if choice == 3:
        annotations[f"{GROUP}/last-handled-configuration"] = "{not json"
        return "kopf's diff-base annotation forged: not JSON"
    if choice == 4:
        annotations[f"{GROUP}/ensure"] = json.dumps(
            {
                "started": "2020-01-01T00:00:00.000000+00:00",
                "success": True,
                "retries": 1,
                "purpose": "create",
            }
        )
        return "kopf's progress annotation forged: handler ensure already succeeded"
    if choice == 5:
        meta["finalizers"] = [FINALIZER]
        return "metadata.finalizers: the operator's finalizer set by the department"
    if choice == 6:
        # Over the API server's 256 KiB of annotations, or under it by less than kopf's own copy of them.
        size = t.pick([150_000, 300_000])
        annotations["note"] = "x" * size
        return f"metadata.annotations: {size} characters"
    meta["ownerReferences"] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "gone",
            "uid": "00000000-0000-0000-0000-000000000000",
        }
    ]
    return "metadata.ownerReferences: an owner that does not exist (the garbage collector deletes it)"


# -- updates of an admitted request --------------------------------------------------------------------

Update = tuple[str, dict[str, Any]]


def immutable_update(t: Target) -> Update:
    """A merge patch changing what must not change (or what may, hostilely)."""
    spec, kind = t.spec(), t.kind
    options: list[Update] = [
        (
            "spec.offering changed",
            {"spec": {"offering": offering_of(t.pick([k for k in request_kinds() if k != kind]))}},
        ),
        ("spec.secretName changed", {"spec": {"secretName": f"{t.body['metadata']['name']}-other"}}),
        ("spec.plan changed to no plan", {"spec": {"plan": "no-such-plan"}}),
        (f"metadata.labels[{GRADE_LABEL}] raised to core", {"metadata": {"labels": {GRADE_LABEL: "core"}}}),
    ]
    if "secretName" in spec:
        options.append(("spec.secretName removed", {"spec": {"secretName": None}}))
    else:
        options.append(
            ("spec.secretName added", {"spec": {"secretName": f"{t.body['metadata']['name']}-late"}})
        )
    if kind == "MapLayer":
        options += [
            (
                "spec.geometryType changed",
                {"spec": {"geometryType": "Polygon" if spec.get("geometryType") != "Polygon" else "Point"}},
            ),
            ("spec.coordinateSystem changed", {"spec": {"coordinateSystem": "EPSG:4326"}}),
            ("spec.geometryType removed", {"spec": {"geometryType": None}}),
            (
                "spec.attributes[].type changed",
                {"spec": {"attributes": [{"name": "label", "type": "integer"}]}},
            ),
        ]
    if kind == "MessagingChannel":
        options += [
            ("spec.storage file → memory", {"spec": {"storage": "memory", "limits": {"maxBytes": "1Mi"}}}),
            (
                "spec.shareWith an uncleared department, grade label removed",
                {
                    "metadata": {"labels": {GRADE_LABEL: None}},
                    "spec": {"shareWith": [{"department": "dept-jiaotong"}]},
                },
            ),
        ]
    if kind == "IdentityClient":
        options.append(("spec.type confidential → public", {"spec": {"type": "public"}}))
    if kind == "InferenceEndpoint":
        options.append(("spec.modelUri → another file", {"spec": {"modelUri": "traffic-flow/1/model.pkl"}}))
    if kind == "SensorFleet":
        options.append(("spec.devices replaced", {"spec": {"devices": ["other-1"]}}))
    limits = component_type_by_kind(kind).limits
    if limits:
        name = t.pick(sorted(limits))
        options.append(
            (f"spec.limits.{name} raised above every plan", {"spec": {"limits": {name: _huge(limits[name])}}})
        )
    return t.pick(options)


def _huge(kind: str) -> Any:
    return {"duration": "999999999d", "quantity": "999999Ti", "integer": 2**62}[kind]


def applies(family: str, kind: str) -> bool:
    """Whether the kind has something for the family to change."""
    if family == "duplicate-entries":
        return any(f.type == "array" for f in fields(kind))
    if family == "share":
        return kind in ("MessagingChannel", "MapLayer")
    return True


FAMILIES: dict[str, Mutation] = {
    "drop-required": drop_required,
    "wrong-type": wrong_type,
    "out-of-range": out_of_range,
    "unknown-enum": enum_value,
    "duplicate-entries": duplicate,
    "over-plan": over_plan,
    "offering-plan": offering,
    "share": share,
    "namespace": namespace,
    "metadata": metadata,
}
