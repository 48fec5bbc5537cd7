"""`cityhub operator start|stop|status`: the operator and every component type's backend as local processes,
next to the embedded cluster (or any cluster in $KUBECONFIG): the embedded default runs the whole product.

    .state/processes/<name>.json        one record per process (pid, start time, ports, log), for status/stop
    .state/backends/<type>/             each type's backend: configuration, data, logs (its local.py)
    .state/backends/secrets/            per-checkout master secrets of the backends (mode 0600)
    .state/operator/operator.log, env   python -m cityhub_operator (JSON logs); its settings (no secrets)

Every type with a `local.py` is started (component_types/<type>/local.py, found by the registry). A backend
that fails to start is named with its log; the others keep running and the operator serves them. In a real
cluster the stack runs the operator and the backends as workloads instead (cityhub:operator.deploy,
cityhub:backends.deploy).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from cityhub import local_edge_operator, login, paths, supervisor
from cityhub.embedded_cluster import sign_in
from cityhub.embedded_cluster.layout import HUB, kubeconfig_path
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.supervisor import ProcessFailed, Record, Supervisor
from cityhub_api import labels, registry
from cityhub_api.labels import SYSTEM_NAMESPACE
from cityhub_api.settings import Env

OPERATOR_ACCOUNT = "cityhub-operator"
OPERATOR = "operator"


def _supervisor() -> Supervisor:
    return Supervisor(paths.state_dir() / "processes")


def _kubeconfig() -> Path:
    path = Env().path("KUBECONFIG", kubeconfig_path())
    if not path.exists():
        raise SystemExit(
            f"cityhub operator: no kubeconfig at {path}; run `cityhub cluster up` or set KUBECONFIG"
        )
    return path


def service_account_kubeconfig(admin: Path, out: Path) -> Path | None:
    """A kubeconfig for the operator's own ServiceAccount (created by the stack), so the local operator has
    exactly the permissions it has in the cluster, and admission lets it write request status. None when the
    ServiceAccount does not exist (the stack was not applied)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(admin)))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400)
    )
    try:
        token = api.create_namespaced_service_account_token(OPERATOR_ACCOUNT, SYSTEM_NAMESPACE, request)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    doc = yaml.safe_load(admin.read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == current["cluster"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": OPERATOR_ACCOUNT, "user": {"token": token.status.token}}],
                "contexts": [
                    {
                        "name": OPERATOR_ACCOUNT,
                        "context": {"cluster": cluster["name"], "user": OPERATOR_ACCOUNT},
                    }
                ],
                "current-context": OPERATOR_ACCOUNT,
            }
        )
    )
    return out


def start_backends(sup: Supervisor, only: tuple[str, ...] = ()) -> tuple[dict[str, LocalBackend], list[str]]:
    """Start every type's local backend (or those in `only`), side by side (Keycloak's JVM takes longest);
    returns the started ones and the failures."""
    types = [
        t
        for t in registry.component_types().values()
        if t.has(registry.LOCAL) and (not only or t.name in only)
    ]

    def launch(ctype: registry.ComponentType) -> LocalBackend:
        ctx = LocalContext(
            type_name=ctype.name,
            directory=paths.state_dir() / "backends" / ctype.name,
            supervisor=sup,
            cache=paths.cache_dir(),
        )
        return ctype.load(registry.LOCAL).start(ctx)  # type: ignore[no-any-return]

    started: dict[str, LocalBackend] = {}
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, len(types))) as pool:
        futures = {t.name: pool.submit(launch, t) for t in types}
    for name, future in futures.items():
        try:
            backend = future.result()
        except (ProcessFailed, FileNotFoundError, OSError) as e:
            failed.append(name)
            print(f"{name}: backend did not start: {e}", file=sys.stderr)
            continue
        started[name] = backend
        print(f"{name}: {backend.summary or 'started'}")
    return started, failed


def set_up_sign_in(type_name: str, backend: LocalBackend, admin_kubeconfig: Path) -> None:
    """People sign in with the city's identity: its sign-in client and departments' groups, the embedded
    cluster's trust in it, and what `cityhub login` needs (<state>/people/issuer.json)."""
    from kubernetes import client, config

    assert backend.issuer is not None
    api = config.new_client_from_config(config_file=str(admin_kubeconfig))
    namespaces = client.CoreV1Api(api).list_namespace(label_selector=f"{labels.TENANT}=department").items
    departments = sorted(ns.metadata.labels[labels.DEPARTMENT] for ns in namespaces)
    registry.component_type(type_name).load(registry.PEOPLE).ensure_sign_in(backend.operator_env, departments)
    ca_file = paths.state_dir() / "people" / "issuer-ca.crt"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_text(backend.issuer.ca_pem)
    doc = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    login.Directory(
        issuer=backend.issuer.url,
        ca_file=str(ca_file),
        server=cluster["server"],
        server_ca=cluster.get("certificate-authority-data", ""),
        identity=dict(backend.operator_env),
    ).save()
    if admin_kubeconfig == kubeconfig_path():
        changed = sign_in.trust(backend.issuer)
        note = "now trusts" if changed else "trusts"
        print(f"sign-in: the embedded cluster {note} {backend.issuer.url} ({len(departments)} departments)")
    else:
        print(
            f"sign-in: configure your cluster's API server to trust {backend.issuer.url} "
            "(docs/department-guide.md, 平台管理员: API server)"
        )


def launch(sup: Supervisor, name: str, state: Path, env: dict[str, str], serves: str) -> Record | None:
    """Start `python -m cityhub_operator` as process `name` with `env` plus health and metrics ports of its
    own, its settings in <state>/env (no secrets) and its log in <state>/operator.log; wait until healthy.
    None (the reason printed) when it does not come up. The hub's operator and every edge's start here."""
    health, metrics = supervisor.free_port(), supervisor.free_port()
    env = {**env, "CITYHUB_HEALTH_PORT": str(health), "CITYHUB_METRICS_PORT": str(metrics)}
    (state / "env").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    rec = sup.spawn(
        name,
        [sys.executable, "-m", "cityhub_operator"],
        log=state / "operator.log",
        env={**Env().env, **env},
        cwd=paths.repo_root(),
        ports={"health": health, "metrics": metrics},
        serves=serves,
        url=f"http://127.0.0.1:{metrics}/metrics",
    )
    try:
        supervisor.wait_ready(rec, lambda: supervisor.http_ok(f"http://127.0.0.1:{health}/healthz"), 60)
    except ProcessFailed as e:
        print(f"cityhub operator: {e}", file=sys.stderr)
        return None
    return rec


def start(drift_interval: str = "30", only: tuple[str, ...] = ()) -> int:
    sup = _supervisor()
    state = paths.state_dir() / "operator"
    state.mkdir(parents=True, exist_ok=True)
    if rec := sup.get(OPERATOR):
        print(f"operator already running (pid {rec.pid}, serving {rec.serves}); logs: {rec.log}")
        return 0
    kubeconfig = service_account_kubeconfig(_kubeconfig(), state / "kubeconfig")
    if kubeconfig is None:
        print(
            f"cityhub operator: ServiceAccount {SYSTEM_NAMESPACE}/{OPERATOR_ACCOUNT} not found; "
            "apply the stack first (`cityhub up`)",
            file=sys.stderr,
        )
        return 1
    backends, failed = start_backends(sup, only)
    if not backends:
        print("cityhub operator: no backend started; nothing to serve", file=sys.stderr)
        return 1
    for name, backend in backends.items():
        if backend.issuer is not None:
            set_up_sign_in(name, backend, _kubeconfig())
    served = sorted(backends)
    env = {
        "KUBECONFIG": str(kubeconfig),
        "CITYHUB_COMPONENTS": ",".join(served),
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": drift_interval,
    }
    for backend in backends.values():
        env.update(backend.operator_env)
    rec = launch(sup, OPERATOR, state, env, ", ".join(served))
    if rec is None:
        return 1
    print(f"operator pid {rec.pid} serving {', '.join(served)}; metrics {rec.url}; logs {rec.log}")
    if failed:
        print(f"not served (backend failed, see above): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def stop() -> int:
    for name, pid, outcome in _supervisor().stop_all():
        print(f"{name} (pid {pid}): {outcome}")
    return 0


def status() -> int:
    """Each process, what it serves, its ports and log; exit 3 when any recorded process is down."""
    records = _supervisor().records()
    if not records:
        print("nothing started (cityhub operator start)")
        return 3
    down = 0
    rows = [("PROCESS", "STATE", "PID", "SERVES", "PORTS", "LOG")]
    for rec in records:
        alive = supervisor.is_running(rec)
        down += not alive
        ports = ",".join(f"{k}={v}" for k, v in rec.ports.items())
        rows.append((rec.name, "running" if alive else "down", str(rec.pid), rec.serves, ports, rec.log))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 3 if down else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cityhub operator", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--drift-interval", default="30", help="seconds between drift checks (start)")
    parser.add_argument(
        "--components", default="", help="comma-separated component types to start (default: every type)"
    )
    parser.add_argument(
        "--cluster",
        default=HUB,
        help="start: the operator serving this edge cluster (多级贯通), beside the hub's, which must run",
    )
    ns = parser.parse_args(argv)
    if ns.action == "start" and ns.cluster != HUB:
        if ns.components:
            parser.error("--components: an edge's operator serves what the hub's serves")
        return local_edge_operator.start(ns.cluster, _supervisor(), ns.drift_interval)
    if ns.action == "start":
        only = tuple(c.strip() for c in ns.components.split(",") if c.strip())
        unknown = [c for c in only if c not in registry.component_types()]
        if unknown:
            types = ", ".join(registry.type_names())
            parser.error(f"--components: unknown {', '.join(unknown)}; types: {types}")
        return start(ns.drift_interval, only)
    return stop() if ns.action == "stop" else status()
