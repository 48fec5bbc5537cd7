"""What the admission policies check requests against: the AdmissionParams CRD and object the stack writes.

A policy cannot look objects up by a name taken from the request (a ComponentOffering named by
spec.offering, a namespace named in shareWith), so the stack publishes these facts to it from the same
configuration it builds everything else from: every department's namespace, zone and grade, the private
zones, the catalog's offerings and plans, the request kinds, and the identities allowed to write request
status. A missing params object denies every request (fail closed). Params are a CRD, not a ConfigMap:
kube-apiserver (1.36) stops its informer for a built-in paramKind for good once no binding uses it for a
moment (kubernetes/kubernetes#130887, #133827), after which every request is denied with "no params found"
until the API server restarts; a destroy and up of the stack would do that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cityhub.config_model import GRADE_LABELS, Department, Zone
from cityhub_api import labels
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.registry import component_types

PARAMS_NAME = "cityhub"
PARAMS_GROUP = "admission.cityhub.io"
PARAMS_VERSION = "v1alpha1"
PARAMS_KIND = "AdmissionParams"
PARAMS_PLURAL = "admissionparams"
PARAM_KIND = {"apiVersion": "admission.cityhub.io/v1alpha1", "kind": "AdmissionParams"}
"""The policies' paramKind."""
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:cityhub-operator"
"""The operator's ServiceAccount (components/component_operator.py NAME), the default status writer."""


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


def params_object(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{PARAMS_GROUP}/{PARAMS_VERSION}",
        "kind": PARAMS_KIND,
        "metadata": {"name": PARAMS_NAME, "labels": labels.common()},
        "spec": dict(spec),
    }
