"""`cityhub operator start|stop|status`: the operator and its backends as local processes, next to the
embedded cluster (or any cluster in $KUBECONFIG), for development and the README's main job.

    .state/operator/operator.pid, operator.log      python -m cityhub_operator (JSON logs)
    .state/operator/env                             the settings it was started with (no secrets)
    .state/backends/nats/                           nats-server: config, JetStream store, log, pid
    .state/backends/nats-secret                     the messaging driver's master secret (mode 0600)

In a real cluster the stack runs the operator as a Deployment instead (cityhub:operator.deploy).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cityhub import paths

SERVED = "messaging"
"""Component types whose backends this command starts locally."""
OPERATOR_ACCOUNT = "cityhub-operator"
OPERATOR_NAMESPACE = "cityhub-system"


def _dirs() -> tuple[Path, Path]:
    return paths.state_dir() / "operator", paths.state_dir() / "backends"


def _pid(file: Path) -> int | None:
    """The PID in `file` if that process is alive."""
    try:
        pid = int(file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _stop_pid(file: Path, what: str, timeout: float = 20.0) -> None:
    pid = _pid(file)
    if pid is None:
        file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(file):
        time.sleep(0.1)
    if _pid(file):
        os.kill(pid, signal.SIGKILL)
    file.unlink(missing_ok=True)
    print(f"stopped {what} (pid {pid})")


def _kubeconfig() -> Path:
    given = os.environ.get("KUBECONFIG")
    path = Path(given) if given else paths.state_dir() / "cluster" / "kubeconfig"
    if not path.exists():
        raise SystemExit(
            f"cityhub operator: no kubeconfig at {path}; run `cityhub cluster up` or set KUBECONFIG"
        )
    return path


def _service_account_kubeconfig(admin: Path, out: Path) -> Path | None:
    """A kubeconfig for the operator's own ServiceAccount (created by the stack), so the local operator has
    exactly the permissions it has in the cluster, and admission lets it write request status. None when the
    ServiceAccount does not exist (the stack was not applied)."""
    import yaml
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(admin)))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400)
    )
    try:
        token = api.create_namespaced_service_account_token(OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, request)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    doc = yaml.safe_load(admin.read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == current["cluster"])
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


def _nats_secret(backends: Path) -> Path:
    file = backends / "nats-secret"
    if not file.exists():
        backends.mkdir(parents=True, exist_ok=True)
        file.touch(mode=0o600)
        file.write_text(secrets.token_urlsafe(48))
    return file


def start(drift_interval: str = "30") -> int:
    # Imported here: only `start` needs the operator package and its messaging driver.
    from component_types.messaging.driver.server import LocalServer, free_port

    state, backends = _dirs()
    state.mkdir(parents=True, exist_ok=True)
    if pid := _pid(state / "operator.pid"):
        print(f"operator already running (pid {pid}); logs: {state / 'operator.log'}")
        return 0
    kubeconfig = _service_account_kubeconfig(_kubeconfig(), state / "kubeconfig")
    if kubeconfig is None:
        print(
            f"cityhub operator: ServiceAccount {OPERATOR_NAMESPACE}/{OPERATOR_ACCOUNT} not found; "
            "apply the stack first (`cityhub up`)",
            file=sys.stderr,
        )
        return 1
    secret_file = _nats_secret(backends)
    nats_pid_file = backends / "nats" / "nats-server.pid"
    nats_url_file = backends / "nats" / "url"
    if _pid(nats_pid_file) is None:
        server = LocalServer(backends / "nats", secret_file.read_text().strip().encode(), port=free_port())
        server.start()
        assert server.process is not None
        nats_pid_file.write_text(str(server.process.pid))
        nats_url_file.write_text(server.url)
        print(f"nats-server (JetStream) pid {server.process.pid} at {server.url}")
    health, metrics = free_port(), free_port()
    env = {
        "KUBECONFIG": str(kubeconfig),
        "CITYHUB_COMPONENTS": SERVED,
        "CITYHUB_NATS_URL": nats_url_file.read_text().strip(),
        "CITYHUB_NATS_SECRET_FILE": str(secret_file),
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": drift_interval,
        "CITYHUB_HEALTH_PORT": str(health),
        "CITYHUB_METRICS_PORT": str(metrics),
    }
    (state / "env").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    with (state / "operator.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cityhub_operator"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (state / "operator.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"operator exited with {process.returncode}; see {state / 'operator.log'}", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        print(f"operator not healthy within 60s; see {state / 'operator.log'}", file=sys.stderr)
        return 1
    print(
        f"operator pid {process.pid} serving {SERVED}; metrics http://127.0.0.1:{metrics}/metrics; "
        f"logs {state / 'operator.log'}"
    )
    return 0


def stop() -> int:
    state, backends = _dirs()
    _stop_pid(state / "operator.pid", "operator")
    _stop_pid(backends / "nats" / "nats-server.pid", "nats-server")
    return 0


def status() -> int:
    state, backends = _dirs()
    running = True
    for file, what in (
        (state / "operator.pid", "operator"),
        (backends / "nats" / "nats-server.pid", "nats-server"),
    ):
        pid = _pid(file)
        running &= pid is not None
        print(f"{what}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0 if running else 3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cityhub operator", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--drift-interval", default="30", help="seconds between drift checks (start)")
    ns = parser.parse_args(argv)
    if ns.action == "start":
        return start(ns.drift_interval)
    return stop() if ns.action == "stop" else status()
