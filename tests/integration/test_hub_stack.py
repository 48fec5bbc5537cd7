"""The hub stacks against a real API server: up, no-op, one quota change, 平急切换 both ways, destroy,
and bad configurations stopped before anything changes."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityhub import paths
from cityhub.pulumi_env import pulumi_env

pytestmark = pytest.mark.integration

DEPARTMENT_NAMESPACES = {
    "dept-yingji",
    "dept-chengguan",
    "dept-dashuju",
    "dept-jiaotong",
    "dept-dongcheng-yingji",
    "dept-xihu-hubin",
}


class Project:
    """A private copy of the Pulumi project (own backend, own stack files) on the test cluster."""

    def __init__(self, root: Path, kubeconfig: Path) -> None:
        self.root = root
        self.kubeconfig = kubeconfig
        self.env = pulumi_env() | {
            "KUBECONFIG": str(kubeconfig),
            "PULUMI_BACKEND_URL": (root / "backend").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "integration-test",
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)

    def pulumi(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        # Flags go before a `--` (which lets a value such as -4 through), so the stack is named there.
        split = args.index("--") if "--" in args else len(args)
        args = (*args[:split], "--stack", "dev", *args[split:])
        cmd = [str(paths.tool("pulumi")), "--non-interactive", "--cwd", str(self.root), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False, timeout=900)
        if ok:
            assert result.returncode == 0, (
                f"pulumi {shlex.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def preview(self) -> list[dict[str, Any]]:
        """The steps `pulumi preview` plans, other than those that leave a resource as it is."""
        out = json.loads(self.pulumi("preview", "--json", "--diff").stdout)
        return [s for s in out.get("steps", []) if s["op"] != "same"]

    def kubectl(
        self, *args: str, ok: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(paths.tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, input=stdin, timeout=120)
        if ok:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
        return result

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any], ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", ok=ok, stdin=json.dumps(manifest))


def new_project(tmp_path: Path, kubeconfig: Path) -> Project:
    root = paths.repo_root()
    shutil.copy(root / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(root / "stacks", tmp_path / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(root / ".venv")
    (tmp_path / "backend").mkdir()
    project = Project(tmp_path, kubeconfig)
    project.pulumi("stack", "init")
    return project


@pytest.fixture
def project(tmp_path: Path, kubeconfig: Path) -> Project:
    return new_project(tmp_path, kubeconfig)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, kubeconfig: Path) -> Iterator[Project]:
    """The dev stack, up once for the module. Tests run in file order: read-only checks first, then the
    changes (each puts the stack back), then destroy."""
    project = new_project(tmp_path_factory.mktemp("hub-stack"), kubeconfig)
    up = project.pulumi("up", "--yes", "--skip-preview")
    assert "created" in up.stdout
    yield project
    project.pulumi("destroy", "--yes", "--skip-preview", ok=False)


def urn_names(steps: list[dict[str, Any]]) -> dict[str, str]:
    """Logical name -> operation, e.g. {"hub-chengguan-compute": "update"}."""
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in steps}


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


BAD_CONFIGS = [
    (["--path", "cityhub:departments[1].zone", "dmz"], "cityhub:departments[1].zone: unknown zone 'dmz'"),
    (
        ["--path", "cityhub:departments[3].slug", "yingji"],
        "cityhub:departments[3].slug: duplicate slug 'yingji'",
    ),
    (
        ["--path", "cityhub:departments[0].creditCode", "11330100024900011A"],
        "cityhub:departments[0].creditCode",
    ),
    (["--path", "cityhub:departments[3].quota.cpu", "--", "-4"], "cityhub:departments[3].quota.cpu"),
    (["--path", "cityhub:departments[3].quota.memory", "lots"], "cityhub:departments[3].quota.memory"),
    (["--path", "cityhub:departments[0].slug", "应急局"], "cityhub:departments[0].slug"),
    (
        ["--path", "cityhub:departments[2].zone", "internet"],
        "holds core data (核心) but zone 'internet' is public",
    ),
]


def test_bad_configurations_fail_before_any_change(project: Project) -> None:
    p = project
    pristine = (p.root / "stacks" / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    for args, message in BAD_CONFIGS:
        (p.root / "stacks" / "Pulumi.dev.yaml").write_text(pristine, encoding="utf-8")
        p.pulumi("config", "set", *args)
        for command in (["preview"], ["up", "--yes", "--skip-preview"]):
            result = p.pulumi(*command, ok=False)
            assert result.returncode != 0, f"{args}: {command} succeeded"
            output = result.stdout + result.stderr
            assert message in output, f"{args}: {message!r} not in:\n{output}"
            assert "Traceback" not in output
    assert p.get("namespaces", "-l", "cityhub.io/tenant=department")["items"] == []
    state = json.loads(p.pulumi("stack", "export").stdout)
    assert len(state["deployment"].get("resources", [])) <= 1


def test_up_creates_the_hub(deployed: Project) -> None:
    p = deployed
    namespaces = {
        n["metadata"]["name"]: n for n in p.get("namespaces", "-l", "cityhub.io/tenant=department")["items"]
    }
    assert set(namespaces) == DEPARTMENT_NAMESPACES
    yingji = namespaces["dept-yingji"]["metadata"]
    assert yingji["labels"]["cityhub.io/zone"] == "egov"
    assert yingji["labels"]["cityhub.io/level"] == "city"
    assert yingji["annotations"]["cityhub.io/display-name"] == "应急管理局"
    system = p.get("namespace", "cityhub-system")
    assert system["metadata"]["labels"]["cityhub.io/division-code"] == "330100"

    quota = p.get("resourcequota", "compute", "-n", "dept-dashuju")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"
    policies = p.get("networkpolicies", "-n", "dept-jiaotong")["items"]
    assert {n["metadata"]["name"] for n in policies} == {"default-deny", "allow-zone"}
    assert {
        c["metadata"]["name"]
        for c in p.get("priorityclasses", "-l", "app.kubernetes.io/part-of=cityhub")["items"]
    } == {
        "cityhub-emergency",
        "cityhub-normal",
    }

    outputs = json.loads(p.pulumi("stack", "output", "--json").stdout)
    assert outputs["departments"]["yingji"]["namespace"] == "dept-yingji"
    assert outputs["departments"]["yingji"]["quota"]["requests.cpu"] == "8"
    assert outputs["sharedServices"]["hub"]["identity"] == "identity.cityhub-system.svc.cluster.local:8080"


def test_claims_bind_and_data_grade_decides_the_class(deployed: Project) -> None:
    p = deployed

    def claim(namespace: str, storage_class: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }

    p.apply(claim("dept-yingji", "cityhub-encrypted"))
    phase = wait_for(
        lambda: p.get("pvc", "data", "-n", "dept-yingji").get("status", {}).get("phase") == "Bound"
    )
    assert phase, p.kubectl("describe", "pvc", "data", "-n", "dept-yingji").stdout
    # Core data (核心) may not land on the unencrypted class: the quota refuses the claim at admission.
    refused = p.apply(claim("dept-dashuju", "cityhub-standard"), ok=False)
    assert refused.returncode != 0 and "exceeded quota" in refused.stderr
    p.kubectl("delete", "pvc", "data", "-n", "dept-yingji", "--wait=true")


def test_gpu_pool_schedules_on_gpu_nodes_within_its_quota(deployed: Project) -> None:
    p = deployed
    scheduling = json.loads(
        p.get("configmap", "gpu-scheduling", "-n", "cityhub-inference")["data"]["scheduling.json"]
    )

    def pod(name: str, gpus: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "cityhub-inference"},
            "spec": {
                **scheduling,
                "containers": [
                    {
                        "name": "model",
                        "image": "inference",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }
                ],
            },
        }

    p.apply(pod("model", 1))
    node = wait_for(lambda: p.get("pod", "model", "-n", "cityhub-inference")["spec"].get("nodeName"))
    assert node and node.startswith("cityhub-gpu-")
    too_many = p.apply(pod("greedy", 4), ok=False)
    assert too_many.returncode != 0 and "exceeded quota" in too_many.stderr
    p.kubectl("delete", "pod", "model", "-n", "cityhub-inference", "--wait=true")


def test_department_rbac(deployed: Project) -> None:
    p = deployed

    def can(
        user: str, verb: str, resource: str, namespace: str, group: str = "", groups: tuple[str, ...] = ()
    ) -> bool:
        # A SubjectAccessReview, not `kubectl auth can-i`: the latter cannot resolve request kinds whose
        # CRDs the operator has not installed yet, and answers "no" for them.
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": list(groups),
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                },
            },
        }
        out = p.kubectl("create", "-o", "json", "-f", "-", stdin=json.dumps(review)).stdout
        return bool(json.loads(out)["status"].get("allowed"))

    requester = "system:serviceaccount:dept-yingji:component-requester"
    request = {"resource": "messagingchannels", "group": "hub.cityhub.io"}
    assert can(requester, "create", namespace="dept-yingji", **request)
    assert can(requester, "delete", namespace="dept-yingji", **request)
    assert not can(requester, "create", namespace="dept-chengguan", **request)
    assert not can(requester, "create", "pods", "dept-yingji")
    member = {"user": "oidc:zhang.san", "groups": ("oidc:cityhub-yingji-viewers",)}
    assert can(verb="list", resource="pods", namespace="dept-yingji", **member)
    assert can(verb="get", namespace="dept-yingji", **request, **member)
    assert not can(verb="create", namespace="dept-yingji", **request, **member)
    assert not can(verb="get", resource="secrets", namespace="dept-yingji", **member)
    assert not can(verb="list", resource="pods", namespace="dept-chengguan", **member)


def test_second_up_changes_nothing_and_one_quota_changes_only_that(deployed: Project) -> None:
    p = deployed
    p.pulumi("preview", "--expect-no-changes")
    again = p.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes", "--json").stdout
    # `up --json` streams engine events, one JSON object a line; the summary counts what changed.
    summary = next(e["summaryEvent"] for e in map(json.loads, again.splitlines()) if "summaryEvent" in e)
    assert summary["resourceChanges"].keys() <= {"same"}

    p.pulumi("config", "set", "--path", "cityhub:departments[1].quota.cpu", "12")
    assert urn_names(p.preview()) == {"hub-chengguan-compute": "update"}
    p.pulumi("up", "--yes", "--skip-preview")
    assert p.get("resourcequota", "compute", "-n", "dept-chengguan")["spec"]["hard"]["requests.cpu"] == "12"
    p.pulumi("config", "set", "--path", "cityhub:departments[1].quota.cpu", "8")
    p.pulumi("up", "--yes", "--skip-preview")


def test_emergency_mode_moves_quota_and_priority_and_back(deployed: Project) -> None:
    p = deployed
    responders = {"yingji", "dongcheng-yingji"}
    reshaped = {"yingji", "chengguan", "dashuju", "dongcheng-yingji"}  # departments with an emergencyQuota
    expected = (
        {f"hub-{s}-compute": "update" for s in reshaped}
        | {f"hub-{s}-emergency-priority": "update" for s in responders}
        | {f"hub-{s}": "update" for s in responders}
        | {"hub-yingji-component-requests": "update"}  # its emergencyQuota raises quota.components
    )

    def emergency_pod(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "dept-yingji"},
            "spec": {
                "priorityClassName": "cityhub-emergency",
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "c",
                        "image": "rescue",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }

    refused = p.apply(emergency_pod("before"), ok=False)
    assert refused.returncode != 0 and "exceeded quota" in refused.stderr

    p.pulumi("config", "set", "cityhub:mode", "emergency")
    steps = p.preview()
    assert urn_names(steps) == expected
    for step in steps:
        if step["urn"].endswith("::hub-yingji"):  # the namespace: only its priority-class label moves
            assert list(step.get("detailedDiff", {})) == ['metadata.labels["cityhub.io/priority-class"]'], (
                step
            )
    p.pulumi("up", "--yes", "--skip-preview")
    hard = p.get("resourcequota", "compute", "-n", "dept-yingji")["spec"]["hard"]
    assert (hard["requests.cpu"], hard["pods"]) == ("32", "200")
    assert (
        p.get("namespace", "dept-yingji")["metadata"]["labels"]["cityhub.io/priority-class"]
        == "cityhub-emergency"
    )
    p.apply(emergency_pod("during"))
    p.kubectl("delete", "pod", "during", "-n", "dept-yingji", "--wait=true")

    p.pulumi("config", "set", "cityhub:mode", "normal")
    assert urn_names(p.preview()) == expected
    p.pulumi("up", "--yes", "--skip-preview")
    assert p.get("resourcequota", "compute", "-n", "dept-yingji")["spec"]["hard"]["requests.cpu"] == "8"
    p.pulumi("preview", "--expect-no-changes")


def test_destroy_removes_everything(deployed: Project) -> None:
    p = deployed
    p.pulumi("destroy", "--yes", "--skip-preview")
    left = p.get("namespaces", "-l", "app.kubernetes.io/part-of=cityhub")["items"]
    assert [n["metadata"]["name"] for n in left if n.get("status", {}).get("phase") != "Terminating"] == []
    assert p.get("pv", "-l", "app.kubernetes.io/part-of=cityhub")["items"] == []
    assert p.get("storageclasses", "-l", "app.kubernetes.io/part-of=cityhub")["items"] == []
    assert p.get("priorityclasses", "-l", "app.kubernetes.io/part-of=cityhub")["items"] == []
    state = json.loads(p.pulumi("stack", "export").stdout)
    assert len(state["deployment"].get("resources", [])) <= 1  # at most the stack itself
