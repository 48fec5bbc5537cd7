"""`cityhub operator start --cluster <edge>` (多级贯通): the operator serving an edge cluster in the embedded
default, beside the hub's.

The same operator program, watching the edge's API server (its own ServiceAccount there, made by the stack on
every cluster), with the hub's backends' settings: a department on the edge applies a request with kubectl on
its own cluster and gets status, events and the Secret there, served by the hub's identity realm, map database
and model pool. Where the edge must keep working alone, a type's launcher starts an edge-local part
(`start_edge` in its local.py: messaging's nats-server, a leaf node of the hub's) and adds the settings that
make its driver use it.

    .state/operator-<edge>/operator.log, env, kubeconfig    the edge operator's log, settings, ServiceAccount
    .state/backends/<type>/edges/<edge>/                     the type's edge-local part

The hub's operator must run first (`cityhub operator start`): its settings file is where the backends are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cityhub import paths
from cityhub.embedded_cluster import sign_in
from cityhub.embedded_cluster.layout import check_name, kubeconfig_path, layout
from cityhub.local_backends import LocalContext
from cityhub.supervisor import ProcessFailed, Supervisor
from cityhub_api import labels, registry

START_EDGE = "start_edge"
"""The optional function of a type's local.py that starts its edge-local part."""


def record_name(edge: str) -> str:
    return f"operator@{edge}"


def hub_settings() -> dict[str, str]:
    """The hub operator's settings (.state/operator/env): where every backend is."""
    file = paths.state_dir() / "operator" / "env"
    if not file.exists():
        raise SystemExit("cityhub operator: the hub's operator has not started; run `cityhub operator start`")
    return dict(line.split("=", 1) for line in file.read_text().splitlines() if "=" in line)


def edge_departments(admin: Path) -> list[str]:
    """The departments the stack placed on the edge, by namespace (what the operator calls a department: its
    NATS account, its leaf credentials)."""
    return sorted(ns["metadata"]["name"] for ns in _department_namespaces(admin))


def _department_namespaces(admin: Path) -> list[dict[str, Any]]:
    kubectl = str(paths.bin_dir() / "kubectl")
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(admin), "get", "namespaces", "-l", labels.DEPARTMENT, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise SystemExit(f"cityhub operator: cannot list the edge's departments: {out.stderr.strip()}")
    return list(json.loads(out.stdout)["items"])


def start(edge: str, sup: Supervisor, drift_interval: str) -> int:
    """Start the operator serving edge cluster `edge`; 0 when it runs (or already ran), 1 otherwise."""
    from cityhub.local_operator import OPERATOR, launch, service_account_kubeconfig

    check_name(edge)
    name = record_name(edge)
    if rec := sup.get(name):
        print(f"operator of {edge} already running (pid {rec.pid}, serving {rec.serves}); logs: {rec.log}")
        return 0
    if sup.get(OPERATOR) is None:
        print("cityhub operator: start the hub's operator first (`cityhub operator start`)", file=sys.stderr)
        return 1
    hub = hub_settings()
    admin = kubeconfig_path(edge)
    if not admin.exists():
        print(f"cityhub operator: no cluster {edge}; run `cityhub cluster up --name {edge}`", file=sys.stderr)
        return 1
    state = paths.state_dir() / f"operator-{edge}"
    kubeconfig = service_account_kubeconfig(admin, state / "kubeconfig")
    if kubeconfig is None:
        print(f"cityhub operator: the stack has not been applied to {edge} (`cityhub up`)", file=sys.stderr)
        return 1
    served = [t for t in hub.get("CITYHUB_COMPONENTS", "").split(",") if t]
    departments = edge_departments(admin)
    own = ("KUBECONFIG", "CITYHUB_HEALTH_PORT", "CITYHUB_METRICS_PORT")
    env = {k: v for k, v in hub.items() if k not in own}
    for type_name in served:
        ctype = registry.component_types()[type_name]
        launcher = ctype.load(registry.LOCAL) if ctype.has(registry.LOCAL) else None
        if launcher is None or not hasattr(launcher, START_EDGE):
            continue  # served by the hub's backend as it is
        ctx = LocalContext(type_name, paths.state_dir() / "backends" / type_name, sup, paths.cache_dir())
        try:
            backend = getattr(launcher, START_EDGE)(ctx, edge, departments)
        except ProcessFailed as e:
            print(f"{type_name} on {edge}: {e}", file=sys.stderr)
            return 1
        print(f"{type_name} on {edge}: {backend.summary}")
        env.update(backend.operator_env)
    env.update({"KUBECONFIG": str(kubeconfig), "CITYHUB_DRIFT_INTERVAL": drift_interval})
    serves = f"{', '.join(served)} on edge {edge} ({len(departments)} departments)"
    rec = launch(sup, name, state, env, serves)
    if rec is None:
        return 1
    print(f"operator of {edge} pid {rec.pid} serving {rec.serves}; metrics {rec.url}; logs {rec.log}")
    # People sign in to their own cluster: the edge's API server trusts the issuers the hub's does (the
    # city's identity, once the hub's operator has started it), and the edge's departments get their role
    # groups there; `cityhub login <user> --cluster <edge>`.
    issuers = sign_in.trusted()
    for issuer in issuers:
        if sign_in.trust(issuer, layout(edge)):
            print(f"sign-in: {edge} now trusts {issuer.url}")
    if issuers:
        slugs = sorted(ns["metadata"]["labels"][labels.DEPARTMENT] for ns in _department_namespaces(admin))
        for type_name in served:
            ctype = registry.component_types()[type_name]
            if ctype.has(registry.PEOPLE):
                ctype.load(registry.PEOPLE).ensure_sign_in(hub, slugs)
    return 0
