"""`pulumi preview --policy-pack policies` for real: the pack runs through cityhub's language host, fails
the preview with a clear message for each mandatory violation, warns for advisory ones, lets a stack
config file change the levels, and passes the dev hub stack.

Previews need no cluster (the Kubernetes provider previews offline), so these tests do not start one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cityhub import paths
from cityhub.pulumi_env import pulumi_env

pytestmark = pytest.mark.integration

POLICIES = paths.repo_root() / "policies"

# Every mandatory standard broken once, and both advisory ones, in one small program.
BAD_PROGRAM = """
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import ContainerArgs, PodSpecArgs, SecurityContextArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs as Meta

COMMON = {"app.kubernetes.io/part-of": "cityhub", "app.kubernetes.io/managed-by": "pulumi"}
DEPT = {**COMMON, "cityhub.io/tenant": "department", "cityhub.io/department": "x", "cityhub.io/level": "city",
        "cityhub.io/division-code": "330100", "cityhub.io/zone": "private", "cityhub.io/data-grade": "core",
        "cityhub.io/credit-code": "11330100024900011R"}


def meta(name, namespace=None, labels=COMMON, annotations=None):
    return Meta(name=name, namespace=namespace, labels=labels, annotations=annotations)


k8s.core.v1.Namespace("dept-x", metadata=meta("dept-x", labels=DEPT))
k8s.core.v1.ResourceQuota("dept-x-compute", metadata=meta("compute", "dept-x"),
                          spec={"hard": {"requests.cpu": "4", "requests.nvidia.com/gpu": "6"}})
k8s.networking.v1.NetworkPolicy("dept-x-default-deny", metadata=meta("default-deny", "dept-x"),
                                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
k8s.core.v1.Namespace("dept-y", metadata=meta("dept-y", labels={**COMMON, "cityhub.io/tenant": "department"}))
k8s.core.v1.ResourceQuota("dept-y-compute", metadata=meta("compute", "dept-y"),
                          spec={"hard": {"requests.nvidia.com/gpu": "2"}})
k8s.core.v1.LimitRange("dept-y-defaults", metadata=meta("container-defaults", "dept-y"),
                       spec={"limits": [{"type": "Container", "default": {"cpu": "500m"}}]})
k8s.networking.v1.NetworkPolicy("dept-y-default-deny", metadata=meta("default-deny", "dept-y"),
                                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
k8s.core.v1.Namespace("pool", metadata=meta("cityhub-inference", labels={**COMMON, "cityhub.io/pool": "gpu"}))
k8s.core.v1.ResourceQuota("pool-gpus", metadata=meta("gpu-pool", "cityhub-inference"),
                          spec={"hard": {"requests.nvidia.com/gpu": "4"}})
PLAIN = {**COMMON, "cityhub.io/encrypted": "false"}
k8s.storage.v1.StorageClass("plain", metadata=meta("plain", labels=PLAIN,
                            annotations={"storageclass.kubernetes.io/is-default-class": "true"}),
                            provisioner="kubernetes.io/no-provisioner")
k8s.core.v1.PersistentVolumeClaim("dept-x-data", metadata=meta("records", "dept-x"),
                                  spec={"accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Gi"}}})
k8s.core.v1.Service("dept-x-web", metadata=meta("web", "dept-x"),
                    spec={"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "web"}})
k8s.core.v1.Pod("dept-x-agent", metadata=meta("agent", "dept-x"), spec=PodSpecArgs(
    host_network=True,
    containers=[ContainerArgs(name="agent", image="docker.io/library/busybox:1.36",
                              security_context=SecurityContextArgs(privileged=True))]))
k8s.core.v1.ConfigMap("dept-x-settings", metadata=Meta(name="settings", namespace="dept-x"), data={"a": "b"})
"""

MANDATORY = {
    ("department-namespace-guardrails", "dept-x"): "department namespace dept-x lacks a LimitRange",
    ("no-exposure-in-closed-zones", "dept-x-web"): (
        "Service dept-x/web is type NodePort in zone 'private', which forbids exposure"
    ),
    ("images-from-approved-registries", "dept-x-agent"): (
        "Pod dept-x/agent: container 'agent' uses image docker.io/library/busybox:1.36"
    ),
    ("graded-data-on-encrypted-storage", "dept-x-data"): (
        "PersistentVolumeClaim dept-x/records: claim 'records' holds core data (namespace dept-x) on class "
        "plain, which is not encrypted"
    ),
    (
        "department-namespace-labels",
        "dept-y",
    ): "Namespace dept-y is a department namespace without the labels",
    (
        "gpu-quota-within-pool",
        "dept-x-compute",
    ): "ResourceQuota dept-x/compute grants 6 GPUs but the pool has 4",
    ("no-privileged-pods", "dept-x-agent"): "Pod dept-x/agent asks for hostNetwork: true, container 'agent'",
}
ADVISORY = {
    ("cityhub-common-labels", "dept-x-settings"): "ConfigMap dept-x/settings lacks the labels",
    ("gpu-pool-overcommit", "policy-fixture-policies"): "department GPU quotas add up to 8",
}


@dataclass(frozen=True)
class Finding:
    level: str
    policy: str
    resource: str
    """The logical name of the resource, or the stack's name for findings about the whole stack."""
    text: str


FINDING = re.compile(r"^\s+- \[(mandatory|advisory)\]\s+(\S+)\s+\((?:[^:]+:[^:]+:[^:]+: )?([^)]+)\)$")


def findings(output: str) -> list[Finding]:
    """The policy findings `pulumi preview` prints: a `- [level]  policy  (type: name)` line, the
    policy's description, then the message."""
    lines = output.splitlines()
    out = []
    for i, line in enumerate(lines):
        if m := FINDING.match(line):
            out.append(Finding(m[1], m[2], m[3].strip(), lines[i + 2].strip() if i + 2 < len(lines) else ""))
    return out


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = pulumi_env() | {
            "KUBECONFIG": str(root / "no-cluster"),
            "PULUMI_BACKEND_URL": (root / "backend").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "policy-test",
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        (root / "backend").mkdir(exist_ok=True)

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(paths.tool("pulumi")), "--non-interactive", "--cwd", str(self.root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False, timeout=600)

    def preview(self, stack: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.pulumi("preview", "--stack", stack, "--policy-pack", str(POLICIES), *extra)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("policy-fixture")
    venv = paths.repo_root() / ".venv"
    (root / "Pulumi.yaml").write_text(
        f"name: policy-fixture\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
    )
    (root / "__main__.py").write_text(BAD_PROGRAM)
    project = Project(root)
    assert project.pulumi("stack", "init", "policies").returncode == 0
    return project


def test_mandatory_violations_fail_the_preview_each_with_its_message(bad: Project) -> None:
    result = bad.preview("policies")
    assert result.returncode != 0, result.stdout
    found = findings(result.stdout)
    by_key = {(f.policy, f.resource): f for f in found}
    for key, text in MANDATORY.items():
        assert key in by_key, f"{key} not reported:\n{result.stdout}"
        assert by_key[key].level == "mandatory"
        assert by_key[key].text.startswith(text), by_key[key].text
    for key, text in ADVISORY.items():
        assert by_key[key].level == "advisory" and by_key[key].text.startswith(text), by_key[key]
    assert {f.policy for f in found if f.level == "mandatory"} == {p for p, _ in MANDATORY}
    assert "error: preview failed" in result.stdout + result.stderr


def test_a_stack_policy_config_turns_mandatory_into_advisory_and_preview_passes(
    bad: Project, tmp_path: Path
) -> None:
    config = tmp_path / "lenient.json"
    config.write_text(json.dumps({"all": "advisory"}))
    result = bad.preview("policies", "--policy-pack-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    levels = {f.level for f in findings(result.stdout)}
    assert levels == {"advisory"}
    assert len(findings(result.stdout)) == len(MANDATORY) + len(ADVISORY)


def test_policy_config_sets_rule_parameters(bad: Project, tmp_path: Path) -> None:
    config = tmp_path / "registries.json"
    config.write_text(
        json.dumps(
            {
                "images-from-approved-registries": {"registries": ["docker.io/library"]},
                "no-exposure-in-closed-zones": {"exposableZones": ["private"]},
            }
        )
    )
    found = {f.policy for f in findings(bad.preview("policies", "--policy-pack-config", str(config)).stdout)}
    assert "images-from-approved-registries" not in found and "no-exposure-in-closed-zones" not in found
    assert "no-privileged-pods" in found


@pytest.mark.parametrize("stack", ["dev", "example-city"])
def test_the_city_stacks_keep_every_standard(stack: str, tmp_path: Path) -> None:
    root = paths.repo_root()
    shutil.copy(root / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(root / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(root / ".venv")
    project = Project(tmp_path)
    assert project.pulumi("stack", "init", stack).returncode == 0
    config = POLICIES / "config" / f"{stack}.json"
    result = project.preview(stack, "--policy-pack-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [f for f in findings(result.stdout) if f.level == "mandatory"] == [], result.stdout
    # example-city grants 18 GPUs from a pool of 16: the advisory reports that, and nothing else is found.
    advisories = {f.policy for f in findings(result.stdout)}
    assert advisories == ({"gpu-pool-overcommit"} if stack == "example-city" else set()), result.stdout
