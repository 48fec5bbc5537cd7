"""The admission objects components/admission.py renders: what the params ConfigMap publishes, and which
policy covers which request types."""

from __future__ import annotations

from typing import Any

import yaml

from cityhub import paths
from cityhub.config import load_config
from cityhub_api.catalog import load_offerings, manifests
from components import admission


def dev_config() -> Any:
    doc = yaml.safe_load((paths.repo_root() / "stacks" / "Pulumi.dev.yaml").read_text(encoding="utf-8"))
    return load_config({k.removeprefix("cityhub:"): v for k, v in doc["config"].items()})


def catalog() -> tuple[admission.CatalogOffering, ...]:
    return admission.catalog_offerings(manifests(load_offerings()))


def test_params_publish_departments_zones_catalog_and_status_writers() -> None:
    config = dev_config()
    spec = admission.params_spec(
        config.departments, config.zones, catalog(), admission.request_types(), [admission.OPERATOR_USER]
    )
    assert spec["privateZones"] == ["egov", "private"]
    assert spec["departments"]["dept-dashuju"] == {"grade": "core", "zone": "private"}
    assert spec["departments"]["dept-chengguan"]["grade"] == "general"
    assert spec["offerings"]["messaging"] == {"componentType": "messaging", "plans": ["standard", "large"]}
    assert spec["kinds"]["MessagingChannel"] == "messaging"
    assert spec["statusWriters"] == ["system:serviceaccount:cityhub-system:cityhub-operator"]


def test_params_are_a_cluster_scoped_crd_every_policy_uses() -> None:
    crd = admission.params_crd()
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["metadata"]["name"] == "admissionparams.admission.cityhub.io"
    required = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]
    assert set(required) == set(admission.params_spec((), (), (), (), ()))
    for policy in admission.policies().values():
        # A built-in paramKind (ConfigMap) loses its informer for good in kube-apiserver 1.36 once unbound.
        assert policy["paramKind"] == {
            "apiVersion": "admission.cityhub.io/v1alpha1",
            "kind": "AdmissionParams",
        }


def test_sharing_rules_cover_exactly_the_types_that_share() -> None:
    types = admission.request_types()
    policies = admission.policies(types)
    sharing = policies[admission.SHARING_POLICY]["matchConstraints"]["resourceRules"][0]["resources"]
    assert "messagingchannels" in sharing
    assert sorted(sharing) == sorted(t.plural for t in types if t.shares)
    requests = policies[admission.REQUEST_POLICY]["matchConstraints"]["resourceRules"][0]["resources"]
    assert sorted(requests) == sorted(t.plural for t in types)
    status = policies[admission.STATUS_POLICY]["matchConstraints"]["resourceRules"][0]["resources"]
    assert status == sorted(f"{t.plural}/status" for t in types)
    no_sharing = [t for t in types if not t.shares]
    assert admission.SHARING_POLICY not in admission.policies(no_sharing)


def test_bindings_deny_when_the_params_are_missing() -> None:
    docs: list[dict[str, Any]] = admission.manifests(admission.params_spec((), (), (), (), ()))
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert {b["metadata"]["name"] for b in bindings} == set(admission.policies())
    for b in bindings:
        assert b["spec"]["validationActions"] == ["Deny"]
        assert b["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    for p in (d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"):
        assert p["spec"]["failurePolicy"] == "Fail"
