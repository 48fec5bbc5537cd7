"""What the isolation tests (tests/integration/test_isolation_*.py) share: their environment and the people
in it.

`env`, module-scoped (each isolation module imports it and so starts its own), sets up:

- a Pulumi stack (`pulumi up`, real engine, local backend) with the real tenancy, network and admission
  components for every department of the dev configuration, and the messaging backend's master secret
  passed through the stack as a Pulumi secret into the operator's Secret;
- a real nats-server and the real operator process (`python -m cityhub_operator`);
- one MessagingChannel per department, Ready, with its connection Secret;

and tears it all down afterwards. `subjects(department)` is everyone who holds something in a department
(as the API server sees them), `allowed` asks the API server what one of them may do.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from cityhub import paths
from cityhub import testkit as testing
from cityhub.config import load_config
from cityhub.config_model import Department, HubConfig
from cityhub.pulumi_env import pulumi_env
from cityhub_api import people
from cityhub_api.catalog import load_offerings, manifests
from component_types.messaging.local import NatsServer
from components.tenancy import COMPONENT_REQUEST_GROUP as GROUP
from components.tenancy import REQUESTER_ACCOUNT

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


# ---- who holds something in a department, and what the API server lets them do


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
