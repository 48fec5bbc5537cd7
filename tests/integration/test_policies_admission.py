"""The ValidatingAdmissionPolicies of components/admission.py on the real API server: department
requests refused with a message naming the field and the fix, and the ones that keep the rules let in."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityhub import testkit as testing
from cityhub.config_model import Department, Quota, Zone
from cityhub_api.catalog import load_offerings, manifests
from components import admission

pytestmark = pytest.mark.integration


ZONES = (Zone("egov", "政务外网", False), Zone("internet", "互联网区", True), Zone("private", "专网", False))
GRADE_WORDS = {"general": "一般", "important": "重要", "core": "核心"}
# namespace slug -> (zone, grade)
DEPARTMENTS = {
    "adm-core": ("private", "core"),
    "adm-important": ("egov", "important"),
    "adm-general": ("egov", "general"),
    "adm-public-core": ("internet", "core"),
}


def department(slug: str, zone: str, grade: str) -> Department:
    quota = Quota(cpu="1", memory="1Gi")
    return Department(
        slug=slug,
        name=slug,
        credit_code="11330100024900011R",
        level="市",
        division_code="330100",
        zone=zone,
        data_grade=GRADE_WORDS[grade],  # type: ignore[arg-type]
        emergency_responder=False,
        quota=quota,
        emergency_quota=quota,
        cluster="hub",
    )


def namespace(name: str, zone: str | None = None, grade: str | None = None) -> dict[str, Any]:
    labels = {}
    if zone and grade:
        labels = {"cityhub.io/tenant": "department", "cityhub.io/zone": zone, "cityhub.io/data-grade": grade}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def offerings() -> tuple[admission.CatalogOffering, ...]:
    return admission.catalog_offerings(manifests(load_offerings()))


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Iterator[Path]:
    depts = [department(slug, *v) for slug, v in DEPARTMENTS.items()]
    testing.install_crds(kubeconfig)
    namespaces = [namespace(d.namespace, *DEPARTMENTS[d.slug]) for d in depts]
    namespaces += [namespace("adm-unlabelled")]
    testing.apply(kubeconfig, namespaces)
    testing.apply(kubeconfig, [admission.params_crd()])
    testing.kubectl(
        kubeconfig,
        "wait",
        "--for",
        "condition=Established",
        "--timeout=60s",
        f"crd/{admission.params_crd()['metadata']['name']}",
    )
    data = admission.params_spec(
        depts, ZONES, offerings(), admission.request_types(), [admission.OPERATOR_USER]
    )
    docs = admission.manifests(data)
    testing.apply(kubeconfig, docs)
    # Policies take effect asynchronously: wait until a request the rules refuse is refused.
    last: list[str] = []

    def refused_probe() -> bool:
        # Both a rule on the namespace and one that needs this module's parameters (the catalog): a binding
        # whose parameters are not visible yet would admit everything the parameters decide.
        last[:] = [create(kubeconfig, "adm-unlabelled", "probe").stderr]
        if "is not a department namespace" not in last[0]:
            return False
        last[:] = [create(kubeconfig, depts[0].namespace, "probe", offering="no-such-offering").stderr]
        return "is not in the city catalog" in last[0]

    try:
        testing.wait_for(refused_probe, timeout=60, what="the admission policies to take effect")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last answer: {last}") from None
    yield kubeconfig
    for d in docs:
        testing.kubectl(
            kubeconfig, "delete", d["kind"], d["metadata"]["name"], "--ignore-not-found", check=False
        )
    testing.kubectl(kubeconfig, "delete", "crd", admission.params_crd()["metadata"]["name"], check=False)
    testing.kubectl(
        kubeconfig, "delete", "ns", *(n["metadata"]["name"] for n in namespaces), "--wait=false", check=False
    )


def create(
    kubeconfig: Path, ns: str, name: str, grade: str | None = None, as_user: str | None = None, **spec: Any
) -> Any:
    doc = testing.channel(ns, name, **spec)
    if grade:
        doc["metadata"]["labels"] = {"cityhub.io/data-grade": grade}
    extra = ["--as", as_user] if as_user else []
    return testing.kubectl(kubeconfig, "create", *extra, "-f", "-", stdin=json.dumps(doc), check=False)


def refused(result: Any, text: str) -> None:
    assert result.returncode != 0, f"admitted, expected refusal containing {text!r}"
    assert "denied request" in result.stderr and text in result.stderr, result.stderr


def admitted(result: Any) -> None:
    assert result.returncode == 0, result.stderr


def test_requests_only_from_department_namespaces(cluster: Path) -> None:
    refused(
        create(cluster, "adm-unlabelled", "c1"),
        "namespace adm-unlabelled is not a department namespace: component requests are accepted only",
    )
    admitted(create(cluster, "dept-adm-general", "c1"))


def test_core_data_only_from_a_private_zone(cluster: Path) -> None:
    admitted(create(cluster, "dept-adm-core", "core1"))
    refused(
        create(cluster, "dept-adm-public-core", "core1"),
        "core data (核心) may be requested only from a department in a private zone (egov, private); "
        "dept-adm-public-core is in zone internet",
    )


def test_data_grade_within_the_department_clearance(cluster: Path) -> None:
    refused(
        create(cluster, "dept-adm-general", "g1", grade="important"),
        "the request carries important data but department dept-adm-general is cleared for general",
    )
    refused(
        create(cluster, "dept-adm-general", "g2", grade="secret"),
        "metadata.labels[cityhub.io/data-grade] is secret: use general (一般), important (重要) or core",
    )
    admitted(create(cluster, "dept-adm-important", "g1", grade="general"))


def test_offering_and_plan_from_the_catalog(cluster: Path) -> None:
    refused(
        create(cluster, "dept-adm-general", "o1", offering="kafka"),
        "spec.offering: kafka is not in the city catalog",
    )
    refused(
        create(cluster, "dept-adm-general", "o2", plan="platinum"),
        "spec.plan: platinum is not a plan of offering messaging (plans: standard, large)",
    )
    other = next(o.name for o in offerings() if o.component_type != "messaging")
    refused(create(cluster, "dept-adm-general", "o3", offering=other), f"spec.offering: {other} offers")
    admitted(create(cluster, "dept-adm-general", "o4", plan="large"))


def test_sharing_only_with_existing_departments_cleared_for_the_data(cluster: Path) -> None:
    refused(
        create(cluster, "dept-adm-important", "s1", shareWith=[{"department": "dept-nowhere"}]),
        "spec.shareWith: no department namespace dept-nowhere in this city",
    )
    refused(
        create(cluster, "dept-adm-important", "s2", shareWith=[{"department": "dept-adm-important"}]),
        "a department does not share with itself",
    )
    refused(
        create(
            cluster,
            "dept-adm-important",
            "s3",
            shareWith=[{"department": "dept-adm-general"}, {"department": "dept-adm-core"}],
        ),
        "spec.shareWith: dept-adm-general may not read important data",
    )
    admitted(create(cluster, "dept-adm-important", "s4", shareWith=[{"department": "dept-adm-core"}]))
    admitted(
        create(
            cluster,
            "dept-adm-important",
            "s5",
            grade="general",
            shareWith=[{"department": "dept-adm-general"}],
        )
    )


def test_spec_changes_are_checked_but_metadata_updates_are_not(cluster: Path) -> None:
    admitted(create(cluster, "dept-adm-general", "u1"))
    patch = testing.kubectl(
        cluster,
        "-n",
        "dept-adm-general",
        "patch",
        "messagingchannel",
        "u1",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"plan": "gold"}}),
        check=False,
    )
    refused(patch, "spec.plan: gold is not a plan")
    # The operator's finalizer must always go on and come off, whatever the catalog says now.
    fin = testing.kubectl(
        cluster,
        "-n",
        "dept-adm-general",
        "patch",
        "messagingchannel",
        "u1",
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": ["hub.cityhub.io/test"]}}),
        check=False,
    )
    admitted(fin)
    testing.kubectl(
        cluster,
        "-n",
        "dept-adm-general",
        "patch",
        "messagingchannel",
        "u1",
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": None}}),
    )


def test_only_the_operator_writes_request_status(cluster: Path) -> None:
    admitted(create(cluster, "dept-adm-general", "st1"))
    status = json.dumps({"status": {"observedGeneration": 1}})

    def patch_status(user: str | None) -> Any:
        extra = ["--as", user] if user else []
        return testing.kubectl(
            cluster,
            *extra,
            "-n",
            "dept-adm-general",
            "patch",
            "messagingchannel",
            "st1",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
            check=False,
        )

    refused(patch_status(None), "may not write the status of MessagingChannel requests")
    # RBAC comes first: give the impersonated operator what its ClusterRole grants it in the real stack.
    rbac = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "st-operator", "namespace": "dept-adm-general"},
    }
    testing.apply(
        cluster,
        [
            {
                **rbac,
                "kind": "Role",
                "rules": [
                    {
                        "apiGroups": ["hub.cityhub.io"],
                        "verbs": ["get", "patch"],
                        "resources": ["messagingchannels", "messagingchannels/status"],
                    }
                ],
            },
            {
                **rbac,
                "kind": "RoleBinding",
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "st-operator"},
                "subjects": [
                    {"kind": "ServiceAccount", "name": "cityhub-operator", "namespace": "cityhub-system"}
                ],
            },
        ],
    )
    admitted(patch_status(admission.OPERATOR_USER))


def test_missing_params_fail_closed(cluster: Path) -> None:
    params = testing.kubectl(cluster, "get", admission.PARAMS_PLURAL, admission.PARAMS_NAME, "-o", "json")
    doc = json.loads(params.stdout)
    testing.kubectl(cluster, "delete", admission.PARAMS_PLURAL, admission.PARAMS_NAME)
    try:
        deadline = time.monotonic() + 30
        while True:
            result = create(cluster, "dept-adm-general", "nop")
            if result.returncode != 0 or time.monotonic() > deadline:
                break
            testing.kubectl(
                cluster, "-n", "dept-adm-general", "delete", "messagingchannel", "nop", check=False
            )
            time.sleep(0.5)
        refused(result, "")
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            doc["metadata"].pop(key, None)
        testing.apply(cluster, [doc])


def layer(ns: str, name: str, visibility: str, grade: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MapLayer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"offering": "maps", "geometryType": "Point", "visibility": visibility},
    }
    if grade:
        doc["metadata"]["labels"] = {"cityhub.io/data-grade": grade}
    return doc


def test_only_general_data_is_public(cluster: Path) -> None:
    """A core-grade layer set Public would be served to every department: refused, whatever the sharing."""

    def make(doc: dict[str, Any]) -> Any:
        return testing.kubectl(cluster, "create", "-f", "-", stdin=json.dumps(doc), check=False)

    refused(make(layer("dept-adm-core", "open-core", "Public")), "spec.visibility: Public serves")
    refused(make(layer("dept-adm-important", "open-imp", "Public")), "this request carries important data")
    admitted(make(layer("dept-adm-core", "open-general", "Public", grade="general")))
    admitted(make(layer("dept-adm-general", "open", "Public")))


def test_a_label_only_update_cannot_raise_the_grade_past_the_rules(cluster: Path) -> None:
    """Shared with a general department as general data, then relabelled core: refused (it used to pass
    as a metadata-only update)."""
    doc = testing.channel("dept-adm-core", "relabel", shareWith=[{"department": "dept-adm-general"}])
    doc["metadata"]["labels"] = {"cityhub.io/data-grade": "general"}
    admitted(testing.kubectl(cluster, "create", "-f", "-", stdin=json.dumps(doc), check=False))
    relabel = testing.kubectl(
        cluster,
        "-n",
        "dept-adm-core",
        "label",
        "--overwrite",
        "messagingchannel",
        "relabel",
        "cityhub.io/data-grade=core",
        check=False,
    )
    refused(relabel, "may not read core data")
    still = testing.kubectl(cluster, "-n", "dept-adm-core", "get", "mch", "relabel", "-o", "json")
    assert json.loads(still.stdout)["metadata"]["labels"]["cityhub.io/data-grade"] == "general"


def test_only_the_operator_writes_its_state_annotations(cluster: Path) -> None:
    """A forged "handler ensure already succeeded" would make kopf skip the request for good: refused on
    create and on update, naming the field; the request's own annotations stay the department's."""
    forged = {"hub.cityhub.io/ensure": json.dumps({"success": True, "started": "2026-11-30T00:00:00Z"})}
    doc = testing.channel("dept-adm-general", "ann1")
    doc["metadata"]["annotations"] = {**forged, "note": "mine"}
    result = testing.kubectl(cluster, "create", "-f", "-", stdin=json.dumps(doc), check=False)
    refused(result, "metadata.annotations: keys under hub.cityhub.io/ hold the component operator's state")
    admitted(create(cluster, "dept-adm-general", "ann2"))

    def annotate(*pairs: str, user: str | None = None) -> Any:
        extra = ["--as", user] if user else []
        return testing.kubectl(
            cluster,
            *extra,
            "-n",
            "dept-adm-general",
            "annotate",
            "--overwrite",
            "messagingchannel",
            "ann2",
            *pairs,
            check=False,
        )

    admitted(annotate("note=mine"))
    refused(annotate("hub.cityhub.io/last-handled-configuration={}"), "only the operator writes them")
