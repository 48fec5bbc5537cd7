"""Isolation between departments at every layer, and no secret in plain text anywhere it could leak.

The module starts, once:

- a Pulumi stack (`pulumi up`, real engine, local backend) with the real tenancy, network and admission
  components for every department of the dev configuration, and the messaging backend's master secret
  passed through the stack as a Pulumi secret into the operator's Secret;
- a real nats-server and the real operator process (`python -m cityhub_operator`);
- one MessagingChannel per department, Ready, with its connection Secret.

Then, for each ordered pair of departments and each component type present, cross-access is tried at
each layer: Kubernetes RBAC (SubjectAccessReview for every holder of a department role — its admins',
developers' and viewers' groups from the city's identity, the administrators the stack declares — and its
requester account) and the backend, with the department's own credentials (a probe per component type in
BACKEND_PROBES: identity, maps and inference add theirs there). Every cell must be refused, and the
positive controls (own namespace, own subjects, each role doing what it is for, through kubectl as that
person) must work, so a refusal is not just a broken setup.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from kubernetes import client
from nats.aio.client import RawCredentials

from cityhub import paths
from cityhub import testkit as testing
from cityhub.config import load_config
from cityhub.config_model import Department, HubConfig
from cityhub.pulumi_env import pulumi_env
from cityhub_api import people
from cityhub_api.catalog import load_offerings, manifests
from component_types.messaging.local import NatsServer
from components import admission
from components.department_roles import cluster_role
from components.tenancy import COMPONENT_REQUEST_GROUP as GROUP
from components.tenancy import RBAC_GROUP, REQUESTER_ACCOUNT

pytestmark = pytest.mark.integration

CHANNEL = "feed"

PROGRAM = """
import json

import pulumi
import pulumi_kubernetes as k8s
import yaml

from cityhub.config import load_config
from components import admission
from components.department_roles import DepartmentRoles, DepartmentRolesArgs
from components.network import Network, NetworkArgs
from components.tenancy import DepartmentTenancy, DepartmentTenancyArgs

raw = yaml.safe_load(open("hub-config.yaml", encoding="utf-8"))
config = load_config(raw)
catalog = json.loads(open("catalog.json", encoding="utf-8").read())
# Its own system namespace: the hub stack tests create and destroy cityhub-system in the same session.
system = k8s.core.v1.Namespace("system", metadata={"name": "cityhub-iso-system"})
roles = DepartmentRoles("hub", DepartmentRolesArgs(departments=config.departments))
namespaces = {}
for dept in config.departments:
    args = DepartmentTenancyArgs(department=dept, priority_class="cityhub-normal", roles=roles.names)
    tenancy = DepartmentTenancy(dept.slug, args)
    namespaces[dept.slug] = tenancy.namespace_name
Network("hub", NetworkArgs(zones=config.zones, flows=config.flows, shared_services=config.shared_services,
                           departments=config.departments, namespaces=namespaces,
                           system_namespace=system.metadata.name))
operator_user = pulumi.Config().require("operatorUser")
admission.ComponentAdmission(
    "hub",
    admission.AdmissionArgs(departments=config.departments, zones=config.zones,
                            offerings=admission.catalog_offerings(catalog),
                            status_writers=(admission.OPERATOR_USER, operator_user)),
    opts=pulumi.ResourceOptions(depends_on=[system]),
)
nats_secret = pulumi.Config().require_secret("natsSecret")
k8s.core.v1.Secret("operator-backend", metadata={"name": "cityhub-operator-backend",
                                                 "namespace": system.metadata.name},
                   string_data={"nats-secret": nats_secret})
pulumi.export("departments", namespaces)
pulumi.export("natsSecret", nats_secret)
"""


def dev_config() -> tuple[dict[str, Any], HubConfig]:
    doc = yaml.safe_load((paths.repo_root() / "stacks" / "Pulumi.dev.yaml").read_text(encoding="utf-8"))
    raw = {k.removeprefix("cityhub:"): v for k, v in doc["config"].items()}
    return raw, load_config(raw)


def catalog_documents() -> list[dict[str, Any]]:
    return manifests(load_offerings())


class Stack:
    """A private Pulumi project on the test cluster (own backend, passphrase and stack)."""

    def __init__(self, root: Path, kubeconfig: Path) -> None:
        self.root = root
        self.env = pulumi_env() | {
            "KUBECONFIG": str(kubeconfig),
            "PULUMI_BACKEND_URL": (root / "backend").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "isolation-test",
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)

    def pulumi(self, *args: str, stdin: str | None = None) -> str:
        cmd = [
            str(paths.tool("pulumi")),
            "--non-interactive",
            "--cwd",
            str(self.root),
            *args,
            "--stack",
            "iso",
        ]
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, check=False, timeout=600, input=stdin
        )
        assert result.returncode == 0, f"pulumi {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@dataclass
class Environment:
    kubeconfig: Path
    config: HubConfig
    stack: Stack
    nats: NatsServer
    operator: testing.OperatorProcess
    nats_secret: str
    operator_log: Path
    api: client.ApiClient
    requests: dict[str, dict[str, str]] = field(default_factory=dict)
    """Department namespace -> its channel's connection Secret (decoded)."""

    @property
    def namespaces(self) -> list[str]:
        return [d.namespace for d in self.config.departments]


@pytest.fixture(scope="module")
def env(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    tmp = tmp_path_factory.mktemp("isolation")
    stops: list[Callable[[], None]] = []
    try:
        yield _start(tmp, kubeconfig, stops)
    finally:
        for stop in reversed(stops):
            stop()


def _start(tmp: Path, kubeconfig: Path, stops: list[Callable[[], None]]) -> Environment:
    raw, config = dev_config()
    root = tmp / "stack"
    (root / "backend").mkdir(parents=True)
    venv = paths.repo_root() / ".venv"
    (root / "Pulumi.yaml").write_text(
        f"name: cityhub-isolation\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
    )
    (root / "__main__.py").write_text(PROGRAM)
    (root / "hub-config.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    (root / "catalog.json").write_text(json.dumps(catalog_documents(), ensure_ascii=False))
    stack = Stack(root, kubeconfig)
    stack.pulumi("stack", "init")
    nats_secret = secrets.token_urlsafe(48)
    # From stdin, so the value never appears on a command line either.
    stack.pulumi("config", "set", "--secret", "natsSecret", stdin=nats_secret)
    # The operator runs here with the test kubeconfig's identity, so that identity writes request status.
    whoami = json.loads(testing.kubectl(kubeconfig, "auth", "whoami", "-o", "json").stdout)
    stack.pulumi("config", "set", "operatorUser", whoami["status"]["userInfo"]["username"])

    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, catalog_documents())
    stops.append(lambda: stack.pulumi("destroy", "--yes", "--skip-preview"))
    stack.pulumi("up", "--yes", "--skip-preview")

    nats = NatsServer(tmp / "nats", nats_secret.encode()).start()
    stops.append(nats.stop)
    secret_file = tmp / "nats-secret"
    secret_file.write_text(nats_secret)
    log = tmp / "operator.log"
    env = {
        "CITYHUB_NATS_URL": nats.url,
        "CITYHUB_NATS_SECRET_FILE": str(secret_file),
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": "30",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
    }
    operator = testing.OperatorProcess(kubeconfig, env, log).start()
    stops.append(operator.stop)
    api = testing.api(kubeconfig)
    built = Environment(kubeconfig, config, stack, nats, operator, nats_secret, log, api)
    objects = client.CustomObjectsApi(api)

    def delete_requests() -> None:
        # While the operator still runs, so it releases its finalizers and the namespaces can go.
        for ns in built.namespaces:
            testing.kubectl(
                kubeconfig, "-n", ns, "delete", "messagingchannels", "--all", "--wait=false", check=False
            )
        testing.wait_for(
            lambda: (
                not any(
                    objects.list_namespaced_custom_object(GROUP, "v1alpha1", ns, "messagingchannels")["items"]
                    for ns in built.namespaces
                )
            ),
            60,
            "the test's requests to be deleted",
        )

    stops.append(delete_requests)
    testing.apply(kubeconfig, [testing.channel(ns, CHANNEL) for ns in built.namespaces])

    def ready(ns: str) -> bool:
        assert operator.alive(), f"the operator exited; see {log}"
        obj = objects.get_namespaced_custom_object(GROUP, "v1alpha1", ns, "messagingchannels", CHANNEL)
        return bool(testing.condition(obj, "Ready").get("status") == "True")

    for ns in built.namespaces:
        testing.wait_for(lambda ns=ns: ready(ns), 90, f"{ns}/{CHANNEL} Ready")
        secret = client.CoreV1Api(api).read_namespaced_secret(f"{CHANNEL}-connection", ns)
        built.requests[ns] = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return built


# ---- Kubernetes RBAC layer


@dataclass(frozen=True)
class Subject:
    department: str
    """The department namespace the subject belongs to."""
    role: str
    """admin, developer, viewer (cityhub_api.people.ROLES) or requester (the ServiceAccount)."""
    user: str
    groups: tuple[str, ...]


def subjects(dept: Department) -> list[Subject]:
    """Everyone who holds something in a department: a person in each role's identity-provider group (as
    the API server maps their token), each administrator the stack declares, and the requester account."""
    ns = dept.namespace
    people_in_groups = [
        Subject(
            ns,
            role,
            people.kube_user(f"{role}.of.{dept.slug}"),
            (people.kube_group(dept.slug, role), "system:authenticated"),
        )
        for role in people.ROLES
    ]
    declared = [Subject(ns, "admin", people.kube_user(u), ("system:authenticated",)) for u in dept.admins]
    requester = Subject(
        ns,
        "requester",
        f"system:serviceaccount:{ns}:{REQUESTER_ACCOUNT}",
        ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"),
    )
    return [*people_in_groups, *declared, requester]


STRANGER = Subject(
    "", "none", people.kube_user("stranger"), ("oidc:cityhub-nowhere-admins", "system:authenticated")
)
"""Signed in with the city's identity, but in no department of this hub."""


def allowed(
    api: client.ApiClient,
    who: Subject,
    namespace: str,
    verb: str,
    resource: str,
    group: str = "",
    subresource: str = "",
    name: str = "",
) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=who.user,
            groups=list(who.groups),
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace or None,
                verb=verb,
                group=group,
                resource=resource,
                subresource=subresource or None,
                name=name or None,
            ),
        )
    )
    return bool(client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed)


READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")
Attempt = tuple[str, str, str, str, str]
"""(verb, API group, resource, subresource, object name)."""


def cross_access_attempts(plural: str) -> list[Attempt]:
    """What a department must never be granted in another's namespace, on one component request kind."""
    out = [(v, GROUP, plural, "", "") for v in (*READ, *WRITE)]
    out += [(v, GROUP, plural, "status", "") for v in ("get", "update", "patch")]
    return out


NAMESPACE_ATTEMPTS: list[Attempt] = [
    # Credentials, workloads, debugging, feedback, events and granting roles: everything the department
    # roles give at home, tried abroad.
    *((v, "", "secrets", "", "") for v in READ),
    ("get", "", "pods", "", ""),
    ("create", "", "pods", "", ""),
    ("get", "", "pods", "log", ""),
    ("create", "", "pods", "exec", ""),
    ("get", "", "configmaps", "", ""),
    ("create", "apps", "deployments", "", ""),
    ("list", "", "events", "", ""),
    ("list", "", "resourcequotas", "", ""),
    ("list", GROUP, "componentfeedbacks", "", ""),
    ("create", GROUP, "componentfeedbacks", "", ""),
    ("create", RBAC_GROUP, "rolebindings", "", ""),
    *(("bind", RBAC_GROUP, "clusterroles", "", cluster_role(r)) for r in people.ROLES),
]
"""What a department must never be granted in another's namespace, whatever the component types."""


def present_types(env: Environment) -> list[admission.RequestType]:
    """Component types whose CRD is installed on the cluster (others are being written)."""
    crds = client.ApiextensionsV1Api(env.api).list_custom_resource_definition().items
    installed = {c.spec.names.plural for c in crds if c.spec.group == GROUP}
    return [t for t in admission.request_types() if t.plural in installed]


# ---- backend layer, pluggable per component type


@dataclass(frozen=True)
class BackendCell:
    owner: str
    """The department namespace whose credentials are used."""
    target: str
    """The department namespace whose component is attacked."""
    attempt: str
    refused: bool
    detail: str = ""


BackendProbe = Callable[[Environment], list[BackendCell]]


def messaging_cross_access(env: Environment) -> list[BackendCell]:
    """With each department's own NATS credentials, try to read and write every other department's
    subjects and shared subjects. A cell is refused when the server reports a permissions violation or,
    where a subscription is allowed, nothing published by the target arrives."""

    async def run() -> list[BackendCell]:
        conns: dict[str, Any] = {}
        errors: dict[str, list[str]] = {ns: [] for ns in env.namespaces}
        received: dict[tuple[str, str], list[bytes]] = {}
        try:
            for ns, secret in env.requests.items():

                async def on_error(e: Exception, ns: str = ns) -> None:
                    errors[ns].append(str(e))

                conns[ns] = await nats.connect(
                    secret["url"],
                    user_credentials=RawCredentials(secret["user.creds"]),
                    error_cb=on_error,
                    allow_reconnect=False,
                    connect_timeout=5,
                )
            attempts: list[tuple[str, str, str]] = []
            for owner, conn in conns.items():
                for target in env.namespaces:
                    if target == owner:
                        continue
                    for subject in (f"city.{target}.>", f"shared.{target}.>"):
                        box = received.setdefault((owner, subject), [])

                        async def on_msg(msg: Any, box: list[bytes] = box) -> None:
                            box.append(msg.data)

                        await conn.subscribe(subject, cb=on_msg)
                        attempts.append((owner, target, f"subscribe {subject}"))
                    await conn.publish(f"city.{target}.{CHANNEL}.forged", b"forged")
                    attempts.append((owner, target, f"publish city.{target}.{CHANNEL}.forged"))
                await conn.flush()
            for target, conn in conns.items():
                await conn.publish(f"city.{target}.{CHANNEL}.probe", b"private")
                await conn.flush()
            await asyncio.sleep(1.0)
            cells = []
            for owner, target, attempt in attempts:
                verb, subject = attempt.split(" ", 1)
                word = "subscription to" if verb == "subscribe" else "publish to"
                denied = any(f'{word} "{subject}"' in e for e in errors[owner])
                got = received.get((owner, subject), [])
                refused = denied or (verb == "subscribe" and not got)
                cells.append(
                    BackendCell(owner, target, attempt, refused, f"denied={denied} received={len(got)}")
                )
            return cells
        finally:
            for conn in conns.values():
                await conn.close()

    return asyncio.run(run())


BACKEND_PROBES: dict[str, BackendProbe] = {"messaging": messaging_cross_access}
"""Component type -> the probe that tries cross-department access with the backend's own credentials."""


def test_every_cross_department_cell_is_refused_at_every_layer(env: Environment) -> None:
    types = present_types(env)
    assert "messaging" in {t.component_type for t in types}
    depts = env.config.departments
    attempts = NAMESPACE_ATTEMPTS + [a for t in types for a in cross_access_attempts(t.plural)]
    cells = [
        (who, target.namespace, attempt)
        for owner in depts
        for who in subjects(owner)
        for target in depts
        if target is not owner
        for attempt in attempts
    ]
    roles_tried = {who.role for who, _, _ in cells}
    assert roles_tried == {*people.ROLES, "requester"}
    assert any(who.user == people.kube_user("jt-admin") for who, _, _ in cells), "declared admins are tried"

    def check(cell: tuple[Subject, str, Attempt]) -> str | None:
        who, namespace, (verb, group, resource, sub, name) = cell
        if allowed(env.api, who, namespace, verb, resource, group, sub, name):
            return f"{who.user} ({who.role}) may {verb} {resource}/{sub} {name} in {namespace}"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = [g for g in pool.map(check, cells) if g]
    refused_cells = len(cells) - len(granted)
    backend_cells: list[BackendCell] = []
    for t in types:
        if probe := BACKEND_PROBES.get(t.component_type):
            backend_cells += probe(env)
    leaks = [c for c in backend_cells if not c.refused]
    pairs = len(depts) * (len(depts) - 1)
    print(
        f"\nisolation matrix: {len(depts)} departments, {pairs} ordered pairs, {len(types)} component types "
        f"({', '.join(t.component_type for t in types)}), holders {'/'.join(sorted(roles_tried))}; "
        f"RBAC checks refused {refused_cells}/{len(cells)}; backend checks refused "
        f"{len(backend_cells) - len(leaks)}/{len(backend_cells)} "
        f"(backends probed: {', '.join(sorted(BACKEND_PROBES))})"
    )
    assert granted == [], "\n".join(granted)
    assert leaks == [], "\n".join(f"{c.owner} -> {c.target}: {c.attempt} ({c.detail})" for c in leaks)
    assert len(backend_cells) == pairs * 3


def abilities(api: client.ApiClient, who: Subject, ns: str) -> set[str]:
    """What a person may do in namespace `ns`, in the words a department would use."""

    def may(verb: str, resource: str, group: str = "", sub: str = "", name: str = "") -> bool:
        return allowed(api, who, ns, verb, resource, group, sub, name)

    checks = {
        "read workloads": may("list", "pods") and may("get", "deployments", "apps"),
        "read requests": may("get", "messagingchannels", GROUP)
        and may("get", "messagingchannels", GROUP, "status"),
        "read feedback, events and quotas": may("list", "componentfeedbacks", GROUP)
        and may("list", "events")
        and may("list", "resourcequotas"),
        "deploy": may("create", "deployments", "apps") and may("create", "pods"),
        "request components": may("create", "messagingchannels", GROUP),
        "rate components": may("create", "componentfeedbacks", GROUP),
        "read Secrets": may("get", "secrets") or may("list", "secrets") or may("watch", "secrets"),
        "exec into pods": may("create", "pods", sub="exec"),
        "grant roles": may("create", "rolebindings", RBAC_GROUP)
        and may("bind", "clusterroles", RBAC_GROUP, name=cluster_role("developer")),
        "grant cluster-admin": may("bind", "clusterroles", RBAC_GROUP, name="cluster-admin"),
        # Status is the operator's word (RBAC grants nobody else; admission keeps it so).
        "write request status": may("patch", "messagingchannels", GROUP, "status"),
    }
    return {what for what, yes in checks.items() if yes}


VIEWER = {"read workloads", "read requests", "read feedback, events and quotas"}
DEVELOPER = VIEWER | {"deploy", "request components", "rate components"}
EXPECTED = {
    "viewer": VIEWER,
    "developer": DEVELOPER,
    "admin": DEVELOPER | {"read Secrets", "exec into pods", "grant roles"},
    "requester": {"read requests", "request components"},
}
"""What each holder may do in its own department's namespace: exactly this, no more."""


def test_positive_controls_each_department_works_in_its_own_namespace(env: Environment) -> None:
    """The refusals above mean something only if the same subjects can act where they should."""
    for dept in env.config.departments:
        for who in subjects(dept):
            assert abilities(env.api, who, dept.namespace) == EXPECTED[who.role], who
    # The catalog is cluster-scoped: every person of a department may list it, nobody else.
    for dept in env.config.departments:
        for who in subjects(dept):
            lists = allowed(env.api, who, "", "list", "componentofferings", GROUP)
            assert lists == (who.role != "requester"), who
    assert not allowed(env.api, STRANGER, "", "list", "componentofferings", GROUP)
    assert not allowed(env.api, STRANGER, "dept-jiaotong", "list", "pods")

    async def own_subjects(secret: dict[str, str], ns: str) -> bytes:
        conn = await nats.connect(secret["url"], user_credentials=RawCredentials(secret["user.creds"]))
        try:
            sub = await conn.subscribe(f"city.{ns}.{CHANNEL}.>")
            await conn.publish(f"city.{ns}.{CHANNEL}.hello", b"own")
            return bytes((await sub.next_msg(timeout=5)).data)
        finally:
            await conn.close()

    for ns, secret in env.requests.items():
        assert asyncio.run(own_subjects(secret, ns)) == b"own"


def as_person(
    env: Environment, who: Subject, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl as `who`, as the API server sees a signed-in person (the test's admin impersonates them)."""
    groups = [f"--as-group={g}" for g in who.groups if g != "system:authenticated"]
    return testing.kubectl(env.kubeconfig, f"--as={who.user}", *groups, *args, stdin=stdin, check=False)


def app_pod(namespace: str, *, restricted: bool) -> str:
    """A department's app pod that mounts its channel's connection Secret; `restricted`: it meets Pod
    Security's restricted profile, otherwise it asks to run privileged."""
    security = (
        {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        if restricted
        else {"privileged": True}
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.cityhub.local/jiaotong/app:1.0",
                    "securityContext": security,
                    "volumeMounts": [{"name": "connection", "mountPath": "/etc/feed", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "connection", "secret": {"secretName": f"{CHANNEL}-connection"}}],
        },
    }
    return json.dumps(pod)


def test_people_act_through_kubectl_as_their_role(env: Environment) -> None:
    """What a person of 交通运输局 notices at the command line, once signed in (server-side dry runs: the
    API server authorizes and admits them, including Pod Security and RBAC's escalation check)."""
    jiaotong = next(d for d in env.config.departments if d.slug == "jiaotong")
    ns = jiaotong.namespace
    groups = {people.kube_group(jiaotong.slug, role): role for role in people.ROLES}
    in_group = {groups[g]: w for w in subjects(jiaotong) for g in w.groups if g in groups}
    developer, viewer = in_group["developer"], in_group["viewer"]
    declared = next(w for w in subjects(jiaotong) if w.user == people.kube_user("jt-admin"))
    secret = f"secret/{CHANNEL}-connection"
    dry = ("--dry-run=server", "-o", "name")

    def ok(result: subprocess.CompletedProcess[str]) -> str:
        assert result.returncode == 0, result.stderr
        return result.stdout

    def refused(result: subprocess.CompletedProcess[str], why: str = "forbidden") -> None:
        assert result.returncode != 0 and why in result.stderr, result.stdout + result.stderr

    # 开发者: deploys a pod that mounts the connection Secret, but cannot read the Secret itself.
    ok(as_person(env, developer, "create", "-f", "-", *dry, stdin=app_pod(ns, restricted=True)))
    refused(as_person(env, developer, "-n", ns, "get", secret))
    refused(
        as_person(env, developer, "create", "-f", "-", *dry, stdin=app_pod(ns, restricted=False)),
        "PodSecurity",
    )
    grant = ("create", "rolebinding", "new-developer", "--group=oidc:cityhub-jiaotong-developers")
    developer_role = f"--clusterrole={cluster_role('developer')}"
    refused(as_person(env, developer, "-n", ns, *grant, developer_role, *dry))
    ok(as_person(env, developer, "get", "componentofferings"))
    # 只读: sees the requests, changes nothing, no Secrets.
    assert CHANNEL in ok(as_person(env, viewer, "-n", ns, "get", "messagingchannels", "-o", "name"))
    refused(as_person(env, viewer, "create", "-f", "-", *dry, stdin=app_pod(ns, restricted=True)))
    refused(as_person(env, viewer, "-n", ns, "get", secret))
    # 管理员 declared in the stack (no group at all): reads the credentials, grants the department roles
    # at home, and nothing broader, nowhere else.
    assert ok(as_person(env, declared, "-n", ns, "get", secret, "-o", "jsonpath={.data}"))
    ok(as_person(env, declared, "-n", ns, *grant, developer_role, *dry))
    # Kubernetes' own roles hold what no department role does (NetworkPolicies, quotas …): refused.
    escalation = "attempting to grant RBAC permissions not currently held"
    refused(as_person(env, declared, "-n", ns, *grant, "--clusterrole=cluster-admin", *dry), escalation)
    refused(as_person(env, declared, "-n", ns, *grant, "--clusterrole=admin", *dry), escalation)
    refused(as_person(env, declared, "-n", "dept-yingji", *grant, developer_role, *dry))
    refused(as_person(env, declared, "-n", "dept-yingji", "get", secret))
    ok(as_person(env, declared, "get", "componentofferings"))
    # Signed in, but of no department: no catalog, no namespace.
    refused(as_person(env, STRANGER, "get", "componentofferings"))
    refused(as_person(env, STRANGER, "-n", ns, "get", "pods"))


# ---- no secret in plain text where it could leak


def provisioned_secrets(env: Environment) -> dict[str, str]:
    """Every secret value the environment holds -> where it comes from: each connection Secret's
    credentials (the keys status.endpoints does not publish), the seed and JWT inside NATS creds, and the
    backend's master secret that passed through the stack."""
    objects = client.CustomObjectsApi(env.api)
    found = {env.nats_secret: "the NATS master secret (Pulumi secret config)"}
    for ns, data in env.requests.items():
        obj = objects.get_namespaced_custom_object(GROUP, "v1alpha1", ns, "messagingchannels", CHANNEL)
        public = set(obj["status"].get("endpoints", {}))
        for key, value in data.items():
            if key in public:
                continue
            found[value] = f"{ns}/{CHANNEL}-connection[{key}]"
            for token in re.findall(r"\bS[UAO][A-Z2-7]{56}\b|\beyJ[\w-]+\.[\w-]+\.[\w-]+", value):
                found[token] = f"{ns}/{CHANNEL}-connection[{key}] (seed or JWT)"
    assert len(found) > len(env.requests)
    return found


def leak_sources(env: Environment) -> dict[str, str]:
    """Where a secret must never appear, as text."""
    core = client.CoreV1Api(env.api)
    objects = client.CustomObjectsApi(env.api)
    sources = {"operator log": env.operator_log.read_text(errors="replace")}
    events = core.list_event_for_all_namespaces().items
    sources["Events"] = "\n".join(
        f"{e.reason} {e.message} {e.note if hasattr(e, 'note') else ''}" for e in events
    )
    requests = objects.list_cluster_custom_object(GROUP, "v1alpha1", "messagingchannels")["items"]
    sources["request statuses"] = json.dumps([r.get("status") for r in requests])
    sources["request objects"] = json.dumps(requests)
    sources["stack outputs"] = env.stack.pulumi("stack", "output", "--json")
    sources["stack state (export)"] = env.stack.pulumi("stack", "export")
    backend = env.stack.root / "backend"
    sources["stack state files"] = "\n".join(
        p.read_text(errors="replace") for p in backend.rglob("*") if p.is_file()
    )
    return sources


def test_no_provisioned_secret_appears_in_logs_events_statuses_or_stack_outputs(env: Environment) -> None:
    secret_values = provisioned_secrets(env)
    sources = leak_sources(env)
    assert len(sources["operator log"]) > 0 and sources["Events"].strip()
    leaks = [
        f"{what} found in {where}"
        for value, what in secret_values.items()
        for where, text in sources.items()
        if value in text
    ]
    print(f"\nsecret scan: {len(secret_values)} secret values x {len(sources)} sources, {len(leaks)} found")
    assert leaks == []
    # The secret does pass through the stack, as a Pulumi secret: outputs show it masked.
    assert json.loads(sources["stack outputs"])["natsSecret"] == "[secret]"
