"""The docs' examples cannot rot: every example file is accepted by the real API server as the dev stack sets
it up, fits the dev stack's departments and the catalog's plans, and every manifest shown in the docs is one
of the files, character for character.

    component_types/<type>/examples/*.yaml, docs/examples/*.yaml   the example files
    component_types/<type>/README.md, docs/*.md                     the docs that show them

The API server checks each file with `kubectl apply --dry-run=server` against the CRDs' schemas and CEL rules,
the ValidatingAdmissionPolicies the stack installs (components/admission.py, with the dev stack's departments
as parameters) and Pod Security `restricted` on namespaces labelled as DepartmentTenancy labels them. What
admission cannot see (a plan's limits, the GPU quota, which zones reach a shared service) is checked against
the same configuration and catalog the stack and the operator use.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cityhub_operator import plans

from cityhub import paths
from cityhub import testkit as testing
from cityhub.config import load_config
from cityhub.config_model import Department, HubConfig
from cityhub.embedded_cluster import sign_in
from cityhub_api import registry
from cityhub_api.api import GROUP
from cityhub_api.catalog import load_offerings, manifests
from cityhub_api.crds import feedback_crd
from components import admission
from components.compute import priority_class_for
from components.tenancy import namespace_labels

ROOT = paths.repo_root()
GUIDE = ROOT / "docs" / "department-guide.md"
MESSAGING_EXAMPLE = ROOT / "docs" / "examples" / "messaging-channel.yaml"
WORKLOAD_EXAMPLE = ROOT / "docs" / "examples" / "app-with-connection.yaml"
FEEDBACK_KIND = feedback_crd()["spec"]["names"]["kind"]
FENCE = re.compile(r"^```yaml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)

# The sign-in section of the department guide shows the API server's AuthenticationConfiguration with these
# placeholders (cityhub/embedded_cluster/sign_in.py writes the same file for the embedded cluster).
ISSUER_PLACEHOLDER = "https://<identity host>/realms/city"
CA_PLACEHOLDER = "-----BEGIN CERTIFICATE-----\n<the issuer's CA certificate>\n-----END CERTIFICATE-----\n"


def example_files() -> list[Path]:
    found = [f for t in registry.component_types().values() for f in (t.folder / "examples").glob("*.yaml")]
    return sorted(found + list((ROOT / "docs" / "examples").rglob("*.yaml")))


def doc_pages() -> list[Path]:
    return [t.docs_page for t in registry.component_types().values()] + sorted((ROOT / "docs").glob("*.md"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT))


@cache
def dev_config() -> HubConfig:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text(encoding="utf-8"))
    return load_config({k.removeprefix("cityhub:"): v for k, v in doc["config"].items()})


def dev_departments() -> dict[str, Department]:
    return {d.namespace: d for d in dev_config().departments}


def is_request(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(f"{GROUP}/") and doc.get("kind") != FEEDBACK_KIND


def example_requests() -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, name) -> every component request among the examples."""
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d
        for f in example_files()
        for d in documents(f)
        if is_request(d)
    }


# --- the docs show the files (no cluster needed)


def test_every_component_type_has_an_example() -> None:
    kinds = {d["kind"] for d in example_requests().values()}
    missing = sorted(t.kind for t in registry.component_types().values() if t.kind not in kinds)
    assert not missing, f"no example file requests {missing}: add component_types/<type>/examples/<name>.yaml"
    kinds_anywhere = {d["kind"] for f in example_files() for d in documents(f)}
    assert FEEDBACK_KIND in kinds_anywhere, "no example file gives feedback: docs/examples/feedback.yaml"


def test_manifests_in_the_docs_are_the_example_files() -> None:
    """Every manifest a page shows for a department (a request, feedback, a workload in dept-…) is an example
    file's whole text, and the page names that file."""
    files = {f.read_text(encoding="utf-8").strip(): f for f in example_files()}
    problems = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for found in FENCE.finditer(text):
            block = found.group(1)
            if f"apiVersion: {GROUP}" not in block and "namespace: dept-" not in block:
                continue
            where = f"{shown(page)}:{text.count(chr(10), 0, found.start()) + 1}"
            match = files.get(block.strip())
            if match is None:
                problems.append(f"{where}: this yaml block is no example file's text")
            elif match.name not in text:
                problems.append(f"{where}: shows {shown(match)} without naming it")
    assert not problems, "copy the example file into the page verbatim:\n" + "\n".join(problems)


def test_the_guide_shows_the_api_servers_authentication_configuration() -> None:
    """The platform engineers' section shows the file sign_in.py writes, with placeholders for the issuer."""
    want = sign_in.authentication_config([sign_in.Issuer(url=ISSUER_PLACEHOLDER, ca_pem=CA_PLACEHOLDER)])
    blocks = [yaml.safe_load(b) for b in FENCE.findall(GUIDE.read_text(encoding="utf-8"))]
    configs = [b for b in blocks if isinstance(b, dict) and b.get("kind") == want["kind"]]
    assert configs == [want], (
        "docs/department-guide.md: the AuthenticationConfiguration differs from sign_in.py"
    )


def test_examples_fit_the_dev_stack() -> None:
    """What admission cannot check: the plan's limits, the GPU quota and the zones that reach a shared service
    (for the requesting department and every department it shares with); feedback and workloads refer to an
    example request of their own namespace."""
    config, departments, requests = dev_config(), dev_departments(), example_requests()
    reach = {s.name: set(s.zones) for s in config.shared_services}
    offerings = {o.name: o for o in load_offerings()}
    problems = []
    for file in example_files():
        for doc in documents(file):
            ns, where = doc["metadata"].get("namespace", ""), f"{shown(file)} ({doc['kind']})"
            dept = departments.get(ns)
            if dept is None:
                problems.append(
                    f"{where}: namespace {ns!r} is no dev department's ({', '.join(departments)})"
                )
                continue
            spec = doc.get("spec") or {}
            if is_request(doc):
                problems += request_problems(where, doc, dept, reach, offerings, departments)
            elif doc["kind"] == FEEDBACK_KIND:
                if spec.get("componentType") not in registry.component_types():
                    problems.append(
                        f"{where}: componentType {spec.get('componentType')!r} is no component type"
                    )
                if "component" in spec and (ns, spec["component"]) not in requests:
                    problems.append(f"{where}: rates {spec['component']}, no example request in {ns}")
            else:
                for secret in mounted_secrets(doc):
                    if (ns, secret.removesuffix("-connection")) not in requests:
                        problems.append(f"{where}: Secret {secret} is no example request's connection Secret")
    assert not problems, "\n".join(problems)


def request_problems(
    where: str,
    doc: dict[str, Any],
    dept: Department,
    reach: dict[str, set[str]],
    offerings: dict[str, Any],
    departments: dict[str, Department],
) -> list[str]:
    ctype = registry.component_type_by_kind(doc["kind"])
    spec = doc.get("spec") or {}
    problems = []
    readers = [
        departments[s["department"]] for s in spec.get("shareWith") or [] if s["department"] in departments
    ]
    for user in (dept, *readers):
        if user.zone not in reach.get(ctype.name, set()):
            problems.append(
                f"{where}: {user.namespace} is in zone {user.zone}, which cityhub:sharedServices does not "
                f"open to {ctype.name} ({', '.join(sorted(reach.get(ctype.name, ()))) or 'no zone'})"
            )
    offering = offerings.get(spec.get("offering", ""))
    try:
        resolved = plans.resolve(
            ctype, spec, spec.get("offering", ""), offering.spec if offering else None, sorted(offerings)
        )
    except plans.Unmet as e:
        return [*problems, f"{where}: the operator would refuse it: {e.reason}: {e}"]
    gpus = int(resolved.limits.get("gpu", 0)) * int(spec.get("replicas", 1))
    quota = dept.quota_for(dev_config().mode).gpu
    if gpus > quota:
        problems.append(f"{where}: {gpus} GPUs, but {dept.namespace}'s GPU quota is {quota}")
    return problems


def mounted_secrets(doc: dict[str, Any]) -> set[str]:
    pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    names = {v["secret"]["secretName"] for v in pod.get("volumes") or [] if "secret" in v}
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    return names


# --- the real API server


def namespace_doc(dept: Department) -> dict[str, Any]:
    labels = namespace_labels(dept, priority_class_for(dept, dev_config().mode))
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dept.namespace, "labels": labels}}


def existing(kubeconfig: Path, kind: str, name: str) -> dict[str, Any] | None:
    got = testing.kubectl(kubeconfig, "get", kind, name, "--ignore-not-found", "-o", "json")
    if not got.stdout.strip():
        return None
    doc: dict[str, Any] = json.loads(got.stdout)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        doc["metadata"].pop(key, None)
    doc.pop("status", None)
    return doc


def dry_run(kubeconfig: Path, doc: dict[str, Any]) -> Any:
    return testing.kubectl(
        kubeconfig, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(doc), check=False
    )


@pytest.fixture(scope="module")
def dev_cluster(kubeconfig: Path) -> Iterator[Path]:
    """CRDs, the catalog, the dev departments' namespaces and the admission policies with the dev stack's
    parameters; afterwards only what this module added is removed (other modules share the cluster)."""
    config = dev_config()
    testing.install_crds(kubeconfig)
    catalog = manifests(load_offerings())
    testing.apply(kubeconfig, catalog)
    crd = admission.params_crd()
    crd_name = crd["metadata"]["name"]
    params = admission.params_spec(
        config.departments,
        config.zones,
        admission.catalog_offerings(catalog),
        admission.request_types(),
        [admission.OPERATOR_USER],
    )
    docs = admission.manifests(params)
    crd_before = existing(kubeconfig, "crd", crd_name)
    before = {
        (d["kind"], d["metadata"]["name"]): existing(kubeconfig, d["kind"], d["metadata"]["name"])
        for d in docs
        if crd_before is not None or d["kind"] != admission.PARAMS_KIND  # no CRD: no params object either
    }
    namespaces = {d.namespace: namespace_doc(d) for d in config.departments}
    ns_before = {n: existing(kubeconfig, "namespace", n) for n in namespaces}
    try:
        testing.apply(kubeconfig, namespaces.values())
        testing.apply(kubeconfig, [crd])
        testing.kubectl(
            kubeconfig, "wait", "--for", "condition=Established", "--timeout=60s", f"crd/{crd_name}"
        )
        testing.apply(kubeconfig, docs)
        wait_for_admission(kubeconfig)
        yield kubeconfig
    finally:
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            if before.get((kind, name)):
                testing.apply(kubeconfig, [before[(kind, name)]], check=False)
            else:
                testing.kubectl(kubeconfig, "delete", kind, name, "--ignore-not-found", check=False)
        if crd_before is None:
            testing.kubectl(kubeconfig, "delete", "crd", crd_name, "--ignore-not-found", check=False)
        made = [n for n, was in ns_before.items() if was is None]
        if made:
            testing.kubectl(kubeconfig, "delete", "namespace", *made, "--wait=false", check=False)
        for name, was in ns_before.items():
            if was is not None:  # give back the labels it had: other modules made it
                old = was["metadata"].get("labels") or {}
                labels = {k: old.get(k) for k in namespaces[name]["metadata"]["labels"]}
                patch = json.dumps({"metadata": {"labels": labels}})
                testing.kubectl(
                    kubeconfig, "patch", "namespace", name, "--type=merge", "-p", patch, check=False
                )


def wait_for_admission(kubeconfig: Path) -> None:
    """Policies and their parameters take effect asynchronously: wait until each policy refuses what the dev
    stack's parameters refuse (the catalog; a department's clearance, as the messaging example explains)."""
    (channel,) = documents(MESSAGING_EXAMPLE)
    not_offered = copy.deepcopy(channel)
    not_offered["metadata"]["name"] = "probe-offering"
    not_offered["spec"]["offering"] = "no-such-offering"
    # Without its label the channel carries yingji's grade (important); chengguan is cleared for general only.
    unlabelled = copy.deepcopy(channel)
    unlabelled["metadata"]["name"] = "probe-grade"
    unlabelled["metadata"].pop("labels")
    reader = unlabelled["spec"]["shareWith"][0]["department"]
    probes = [
        (not_offered, "spec.offering: no-such-offering is not in the city catalog"),
        (unlabelled, f"spec.shareWith: {reader} may not read important data"),
    ]
    last: list[str] = []

    def refused() -> bool:
        for doc, text in probes:
            last[:] = [dry_run(kubeconfig, doc).stderr]
            if text not in last[0]:
                return False
        return True

    try:
        testing.wait_for(refused, timeout=60, what="the admission policies to take effect")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last answer: {last}") from None


@pytest.mark.integration
@pytest.mark.parametrize("example", example_files(), ids=shown)
def test_the_api_server_accepts_the_example(dev_cluster: Path, example: Path) -> None:
    result = testing.kubectl(dev_cluster, "apply", "--dry-run=server", "-f", str(example), check=False)
    assert result.returncode == 0, f"kubectl apply -f {shown(example)} is refused:\n{result.stderr}"
    assert "Warning" not in result.stderr, f"kubectl apply -f {shown(example)} warns:\n{result.stderr}"


@pytest.mark.integration
def test_pod_security_would_warn_about_the_workload_without_its_security_context(dev_cluster: Path) -> None:
    """The namespaces enforce `restricted`, so the workload example's clean apply above means something."""
    (doc,) = documents(WORKLOAD_EXAMPLE)
    pod = doc["spec"]["template"]["spec"]
    pod.pop("securityContext")
    for container in pod["containers"]:
        container.pop("securityContext")
    result = dry_run(dev_cluster, doc)
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr, result.stderr
