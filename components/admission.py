"""Admission for component requests across objects: ValidatingAdmissionPolicies (CEL, served by the API
server itself) for what a request's own CRD cannot check because the answer lives elsewhere.

The parts, one concern each:
- admission_params.py: the AdmissionParams CRD and object (cluster-scoped, admission.cityhub.io) that the
  stack writes from the same configuration it builds everything else from, and the facts in it (every
  department's namespace, zone and grade, the private zones, the catalog's offerings and plans, the
  identities allowed to write request status); a missing params object denies every request;
- admission_policies.py: the policies and their bindings: requests only from department namespaces,
  grade ceilings, core data only from private zones, offerings and plans from the catalog, sharing only
  with existing departments cleared for the data, status written by the operator alone;
- admission_state.py: only the operator writes its kopf state annotations.

This module installs them (ComponentAdmission) and renders them as plain manifests; the names importers use
are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import Department, Zone
from cityhub_api import labels
from components.admission_params import (
    OPERATOR_USER,
    PARAMS_GROUP,
    PARAMS_KIND,
    PARAMS_NAME,
    PARAMS_PLURAL,
    PARAMS_VERSION,
    CatalogOffering,
    RequestType,
    catalog_offerings,
    params_crd,
    params_object,
    params_spec,
    request_types,
)
from components.admission_policies import (
    REQUEST_POLICY,
    SHARING_POLICY,
    STATUS_POLICY,
    binding_spec,
    policies,
)

__all__ = [
    "OPERATOR_USER",
    "PARAMS_GROUP",
    "PARAMS_KIND",
    "PARAMS_NAME",
    "PARAMS_PLURAL",
    "PARAMS_VERSION",
    "REQUEST_POLICY",
    "SHARING_POLICY",
    "STATUS_POLICY",
    "AdmissionArgs",
    "CatalogOffering",
    "ComponentAdmission",
    "RequestType",
    "binding_spec",
    "catalog_offerings",
    "manifests",
    "params_crd",
    "params_object",
    "params_spec",
    "policies",
    "request_types",
]


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
