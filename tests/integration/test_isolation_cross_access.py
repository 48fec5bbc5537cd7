"""Isolation between departments at every layer: every cross-department cell is refused.

In the environment of isolation_env.py (a stack of every dev department, nats-server, the operator, one
MessagingChannel per department), for each ordered pair of departments and each component type present,
cross-access is tried at each layer: Kubernetes RBAC (SubjectAccessReview for every holder of a department
role — its admins', developers' and viewers' groups from the city's identity, the administrators the stack
declares — and its requester account) and the backend, with the department's own credentials (a probe per
component type in BACKEND_PROBES: identity, maps and inference add theirs there). Every cell must be
refused; test_isolation_roles.py holds the positive controls, so a refusal is not just a broken setup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from kubernetes import client
from nats.aio.client import RawCredentials

from cityhub_api import people
from components import admission
from components.department_roles import cluster_role
from components.tenancy import COMPONENT_REQUEST_GROUP as GROUP
from components.tenancy import RBAC_GROUP
from tests.integration.isolation_env import CHANNEL, Environment, Subject, allowed, env, subjects

__all__ = ["env"]  # the module-scoped environment of isolation_env.py: this module starts its own
pytestmark = pytest.mark.integration


# ---- Kubernetes RBAC layer


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
