"""The department journey, as its people live it: 交通运输局's administrator, developer and viewer sign in
with the city's identity (Keycloak, through the hub's API server) and, with kubectl alone, list the catalog,
request one component of every type, see them Ready, run a workload that mounts every connection Secret,
and give feedback; nobody reaches 应急管理局's namespace, and a person of no department gets nothing.

Everything runs as a user would run it: `cityhub up`, `cityhub operator start`, `cityhub people add`,
`cityhub login`, kubectl with the kubeconfig login wrote. Its own embedded cluster and state directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityhub import paths
from cityhub_api import registry

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CITYHUB = str(Path(sys.executable).parent / "cityhub")
NS = "dept-jiaotong"
PASSWORD = "Jiaotong-2026-pass"
EXAMPLES = REPO / "docs" / "examples" / "jiaotong"
"""交通运输局's docs examples (README command 1 applies the same files): one request of every type, an app
mounting every connection Secret, a feedback."""


def examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.yaml"))]


def requests() -> list[dict[str, Any]]:
    return [d for d in examples() if d["apiVersion"].startswith("hub.cityhub.io/") and d["kind"] != FEEDBACK]


FEEDBACK = "ComponentFeedback"


def run(*args: str, stdin: str | None = None, env: dict[str, str], check: bool = True) -> Any:
    proc = subprocess.run(args, input=stdin, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Person:
    """kubectl as one signed-in person (the kubeconfig `cityhub login` wrote)."""

    def __init__(self, name: str, kubeconfig: Path, env: dict[str, str]) -> None:
        self.name, self.kubeconfig, self.env = name, kubeconfig, env

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> Any:
        kubectl = str(paths.bin_dir() / "kubectl")
        return run(
            kubectl, "--kubeconfig", str(self.kubeconfig), *args, stdin=stdin, env=self.env, check=check
        )

    def apply(self, doc: dict[str, Any], check: bool = True) -> Any:
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(doc), check=check)

    def refused(self, *args: str) -> str:
        proc = self.kubectl(*args, check=False)
        assert proc.returncode != 0, f"{self.name}: `kubectl {' '.join(args)}` was allowed"
        return str(proc.stderr)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`cityhub up` and `cityhub operator start` in a state directory of this module's own."""
    state = tmp_path_factory.mktemp("journey")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CITYHUB_TEST_KUBECONFIG")}
    env["CITYHUB_STATE"] = str(state)
    try:
        run(CITYHUB, "up", env=env)
        run(CITYHUB, "operator", "start", "--drift-interval", "60", env=env)
        yield env
    finally:
        run(CITYHUB, "operator", "stop", env=env, check=False)
        run(CITYHUB, "cluster", "down", env=env, check=False)


def sign_in(env: dict[str, str], user: str, department: str | None, role: str = "developer") -> Person:
    add = [CITYHUB, "people", "add", user, "--password-stdin", "--role", role]
    run(*add, *(["--department", department] if department else []), stdin=PASSWORD, env=env)
    login = run(CITYHUB, "login", user, "--password-stdin", stdin=PASSWORD, env=env, check=False)
    if department is None:
        assert login.returncode != 0 and "belongs to no department" in login.stderr
        return Person(user, Path(env["CITYHUB_STATE"]) / "people" / user / "kubeconfig", env)
    assert login.returncode == 0, login.stderr
    return Person(user, Path(env["CITYHUB_STATE"]) / "people" / user / "kubeconfig", env)


def test_a_department_uses_the_hub_with_kubectl_alone(hub: dict[str, str]) -> None:
    admin = sign_in(hub, "jt-admin", "jiaotong", "admin")
    developer = sign_in(hub, "jt-dev", "jiaotong", "developer")
    viewer = sign_in(hub, "jt-view", "jiaotong", "viewer")
    who = json.loads(admin.kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == "oidc:jt-admin" and "oidc:cityhub-jiaotong-admins" in who["groups"]

    # The catalog, for everyone in a department.
    offerings = json.loads(viewer.kubectl("get", "componentofferings", "-o", "json").stdout)["items"]
    assert {o["spec"]["componentType"] for o in offerings} == set(registry.component_types())

    # One request of every type, by the developer (the docs examples); all Ready.
    kinds = {registry.component_type_by_kind(d["kind"]).name for d in requests()}
    assert kinds == set(registry.component_types()), "the examples request one component of every type"
    for doc in examples():
        developer.apply(doc)
    for doc in requests():
        plural = registry.component_type_by_kind(doc["kind"]).plural
        name = doc["metadata"]["name"]
        admin.kubectl("wait", "--for=condition=Ready", "--timeout=180s", f"{plural}/{name}", "-n", NS)
    listed = developer.kubectl("get", "cityhub", "-n", NS).stdout
    assert all(d["metadata"]["name"] in listed for d in requests())

    # The app mounts every connection Secret: the developer deployed it without reading them.
    admin.kubectl("rollout", "status", "deployment/traffic-app", "-n", NS, "--timeout=120s")
    pods = json.loads(viewer.kubectl("get", "pods", "-n", NS, "-l", "app=traffic-app", "-o", "json").stdout)
    (pod,) = pods["items"]
    assert pod["spec"]["nodeName"].startswith("cityhub-cpu-") and pod["status"]["phase"] == "Running"
    mounted = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert mounted == {f"{d['metadata']['name']}-connection" for d in requests()}

    # Secrets: the administrator reads them, the developer and the viewer may not.
    data = json.loads(admin.kubectl("get", "secret", "road-events-connection", "-n", NS, "-o", "json").stdout)
    assert "user.creds" in data["data"]
    assert "forbidden" in developer.refused("get", "secret", "road-events-connection", "-n", NS).lower()
    assert "forbidden" in viewer.refused("get", "secrets", "-n", NS).lower()
    viewer.refused("delete", "messagingchannel", "road-events", "-n", NS)
    feedback = json.loads(viewer.kubectl("get", "componentfeedbacks", "-n", NS, "-o", "json").stdout)
    assert [f["spec"]["rating"] for f in feedback["items"]] == [5]

    # Nothing in 应急管理局's namespace, whatever the role.
    for person in (admin, developer, viewer):
        person.refused("get", "pods", "-n", "dept-yingji")
        person.refused("get", "secrets", "-n", "dept-yingji")
    other = {**requests()[0], "metadata": {"name": "spy", "namespace": "dept-yingji"}}
    proc = admin.kubectl("create", "-f", "-", stdin=json.dumps(other), check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()


def test_people_of_no_department_and_bad_passwords_are_refused(hub: dict[str, str]) -> None:
    drifter = sign_in(hub, "drifter", None)
    assert not drifter.kubeconfig.exists(), "no kubeconfig for a person of no department"
    wrong = run(CITYHUB, "login", "jt-admin", "--password-stdin", stdin="not-it", env=hub, check=False)
    assert wrong.returncode != 0 and "wrong user name or password" in wrong.stderr
    # A token of the drifter used directly: the API server knows who it is, RBAC grants nothing.
    directory = json.loads((Path(hub["CITYHUB_STATE"]) / "people" / "issuer.json").read_text())
    token = _password_token(directory, "drifter", PASSWORD)
    config = Path(hub["CITYHUB_STATE"]) / "people" / "drifter-token.kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": directory["server"],
                            "certificate-authority-data": directory["server_ca"],
                        },
                    }
                ],
                "users": [{"name": "drifter", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "drifter"}}],
                "current-context": "c",
            }
        )
    )
    drifter = Person("drifter", config, hub)
    for args in (("get", "componentofferings"), ("get", "pods", "-n", NS), ("get", "secrets", "-n", NS)):
        assert "oidc:drifter" in drifter.refused(*args), "known, but granted nothing"


def test_tokens_are_refreshed_without_the_password_and_revocation_needs_a_new_login(
    hub: dict[str, str],
) -> None:
    person = sign_in(hub, "jt-refresh", "jiaotong", "viewer")
    cache = Path(hub["CITYHUB_STATE"]) / "people" / "jt-refresh" / "token.json"
    doc = json.loads(cache.read_text())
    doc["expires_at"] = int(time.time()) - 1  # as if the 5-minute token had run out
    cache.write_text(json.dumps(doc))
    person.kubectl("get", "componentofferings")
    assert json.loads(cache.read_text())["expires_at"] > time.time(), "a fresh token from the refresh token"
    doc = json.loads(cache.read_text())
    doc.update(expires_at=int(time.time()) - 1, refresh_token="revoked")
    cache.write_text(json.dumps(doc))
    proc = person.kubectl("get", "componentofferings", check=False)
    assert proc.returncode != 0 and "cityhub login jt-refresh" in proc.stderr


def _password_token(directory: dict[str, str], user: str, password: str) -> str:
    import ssl
    import urllib.parse
    import urllib.request

    form = {"grant_type": "password", "client_id": "kubernetes", "username": user, "password": password}
    form["scope"] = "openid"
    req = urllib.request.Request(
        f"{directory['issuer']}/protocol/openid-connect/token", data=urllib.parse.urlencode(form).encode()
    )
    context = ssl.create_default_context(cafile=directory["ca_file"])
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return str(json.load(resp)["id_token"])


def test_the_docs_example_secret_keys_are_what_departments_get(hub: dict[str, str]) -> None:
    """Every key the journey's Secrets hold is documented in the department guide (no key undocumented)."""
    guide = REPO / "docs" / "department-guide.md"
    if not guide.exists():
        pytest.fail("docs/department-guide.md is missing", pytrace=False)
    text = guide.read_text(encoding="utf-8")
    admin = Person("jt-admin", Path(hub["CITYHUB_STATE"]) / "people" / "jt-admin" / "kubeconfig", hub)
    for doc in requests():
        name = f"{doc['metadata']['name']}-connection"
        secret = json.loads(admin.kubectl("get", "secret", name, "-n", NS, "-o", "json").stdout)
        keys = {k for k in secret["data"] if not k.startswith("device-")}
        missing = sorted(k for k in keys if f"`{k}`" not in text)
        assert not missing, f"{doc['kind']}'s Secret keys not in the department guide: {missing}"
