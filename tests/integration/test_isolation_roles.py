"""Positive controls of the isolation tests: each holder of a department role does, in its own
namespace, exactly what the role is for (SubjectAccessReview), its own messaging subjects work, and a
person of 交通运输局 notices the same through kubectl. Without these, the refusals of
test_isolation_cross_access.py could be a broken setup. The environment is isolation_env.py's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import nats
import pytest
from kubernetes import client
from nats.aio.client import RawCredentials

from cityhub import testkit as testing
from cityhub_api import people
from components.department_roles import cluster_role
from components.tenancy import COMPONENT_REQUEST_GROUP as GROUP
from components.tenancy import RBAC_GROUP
from tests.integration.isolation_env import CHANNEL, STRANGER, Environment, Subject, allowed, env, subjects

__all__ = ["env"]  # the module-scoped environment of isolation_env.py: this module starts its own
pytestmark = pytest.mark.integration


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
