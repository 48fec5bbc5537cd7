"""The two sides of bench/peer_nack.py and the backends they share.

    Backends      a fresh embedded cluster (etcd + kube-apiserver + kwok) and a fresh nats-server (JetStream,
                  decentralized JWT auth, the config cityhub renders), in one work directory
    CityhubSide   the cityhub operator serving MessagingChannels (as bench/bench_operator.py runs it)
    NackSide      NACK's jetstream-controller (legacy mode, its default) serving its own Stream CRD, connected
                  to the same nats-server with a user of one JetStream account pushed through the system
                  account (NACK manages streams, not accounts)

Both sides get the same request: a file stream, limits retention, discard old, max age 1h, 1 MiB, 1000
messages, one replica, subjects city.<namespace>.<name> and city.<namespace>.<name>.>.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import yaml
from bench_operator import OFFERING
from readiness import cluster_for, metrics

from cityhub import paths, supervisor
from cityhub import testkit as testing
from cityhub.supervisor import free_port
from cityhub_api.api import GROUP, VERSION
from cityhub_nats import jwt
from cityhub_nats.keys import Keys
from component_types.messaging.local import NatsServer

NACK_VERSION = "0.22.4"
"""The pin of hack/peers/nack.sh: the controller binary and the CRDs come from this module version."""
NACK_MODULE = "github.com/nats-io/nack"
NACK_ACCOUNT = "nack-bench"
LIMITS = {"maxAge": "1h", "maxBytes": 1048576, "maxMsgs": 1000}
"""The stream limits of both sides: cityhub's `bench` plan defaults (bench_operator.OFFERING)."""


@dataclass
class Backends:
    work: Path
    kubeconfig: Path
    nats: NatsServer
    secret: bytes
    system_creds: Path
    stop_cluster: Callable[[], Any]

    def stop(self) -> None:
        try:
            self.nats.stop()
        finally:
            self.stop_cluster()


def start_backends(work: Path) -> Backends:
    """A new embedded cluster and nats-server in `work` (stop() brings both down)."""
    work.mkdir(parents=True, exist_ok=True)
    started = cluster_for(work, None)
    if started is None:
        raise RuntimeError("the embedded cluster did not start (see above)")
    kubeconfig, stop_cluster = started
    try:
        secret = b"bench-secret-" + os.urandom(24).hex().encode()
        nats_server = NatsServer(work / "nats", secret).start()
    except BaseException:
        stop_cluster()
        raise
    (work / "secret").write_text(secret.decode())
    creds = work / "system.creds"
    creds.write_text(Keys(secret).system_creds())
    return Backends(work, kubeconfig, nats_server, secret, creds, stop_cluster)


class CityhubSide:
    name = "cityhub"
    group, version, plural = GROUP, VERSION, "messagingchannels"

    def __init__(self, backends: Backends, worker_limit: int = 0) -> None:
        """`worker_limit`: CITYHUB_WORKER_LIMIT (0: the operator's default, no limit)."""
        self.b = backends
        self.port = free_port()
        self.operator = testing.OperatorProcess(
            backends.kubeconfig,
            {
                "CITYHUB_COMPONENTS": "messaging",
                "CITYHUB_NATS_URL": backends.nats.url,
                "CITYHUB_NATS_SECRET_FILE": str(backends.work / "secret"),
                "CITYHUB_METRICS_PORT": str(self.port),
                "CITYHUB_LOG_FORMAT": "json",
                "CITYHUB_DRIFT_INTERVAL": "600",
                **({"CITYHUB_WORKER_LIMIT": str(worker_limit)} if worker_limit else {}),
            },
            backends.work / "operator.log",
        )

    def install(self, namespaces: list[str]) -> None:
        testing.install_crds(self.b.kubeconfig)
        testing.apply(self.b.kubeconfig, [OFFERING])
        testing.ensure_namespaces(self.b.kubeconfig, namespaces)

    def start(self) -> None:
        self.operator.start()
        testing.wait_for(lambda: _answers(lambda: metrics(self.port)), 120, "the cityhub operator's /metrics")

    @property
    def pid(self) -> int:
        return self.operator.pid

    def doc(self, namespace: str, name: str) -> dict[str, Any]:
        return testing.channel(namespace, name)

    def counters(self) -> dict[str, float]:
        return metrics(self.port)

    def split(self, before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
        """Where the handler's time went (the operator's own metrics; as bench_operator.batch)."""

        def delta(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        reconciles = delta('cityhub_reconcile_time_seconds_count{controller="MessagingChannel"}')
        handler = delta('cityhub_reconcile_time_seconds_sum{controller="MessagingChannel"}')
        backend = delta('cityhub_backend_time_seconds_sum{controller="MessagingChannel",operation="ensure"}')
        secret = delta(
            'cityhub_kubernetes_time_seconds_sum{controller="MessagingChannel",operation="secret"}'
        )
        per = max(reconciles, 1)
        return {
            "reconciles": int(reconciles),
            "handler_mean_ms": round(1000 * handler / per, 2),
            "backend_mean_ms": round(1000 * backend / per, 2),
            "secret_mean_ms": round(1000 * secret / per, 2),
            "rest_mean_ms": round(1000 * (handler - backend - secret) / per, 2),
            "handler_s": round(handler, 2),
        }

    def stop(self) -> None:
        self.operator.stop()


class NackSide:
    name = "nack"
    group, version, plural = "jetstream.nats.io", "v1beta2", "streams"

    def __init__(self, backends: Backends) -> None:
        self.b = backends
        self.process = supervisor.Managed("jetstream-controller")
        self.log = backends.work / "jetstream-controller.log"

    def install(self, namespaces: list[str]) -> None:
        crds = nack_crds()
        testing.apply(self.b.kubeconfig, crds)
        names = [f"crd/{c['metadata']['name']}" for c in crds]
        testing.kubectl(self.b.kubeconfig, "wait", "--for", "condition=Established", "--timeout=60s", *names)
        testing.ensure_namespaces(self.b.kubeconfig, namespaces)
        asyncio.run(_push_account(self.b))
        (self.b.work / "nack.creds").write_text(Keys(self.b.secret).admin_creds(NACK_ACCOUNT))

    def start(self) -> None:
        # Legacy mode, NACK's default. (--control-loop starts controller-runtime's metrics server on :8080,
        # which no flag moves: not run here, on a machine shared with other work.)
        argv = [
            str(controller_binary()),
            f"--kubeconfig={self.b.kubeconfig}",
            f"-s={self.b.nats.url}",
            f"--creds={self.b.work / 'nack.creds'}",
        ]
        self.process.launch(
            argv,
            ready=lambda: "Running in LEGACY mode" in _text(self.log),
            timeout=60,
            log=self.log,
            cwd=self.b.work,
            serves="NACK jetstream-controller (bench peer)",
        )

    @property
    def pid(self) -> int:
        assert self.process.record is not None
        return self.process.record.pid

    def doc(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{self.group}/{self.version}",
            "kind": "Stream",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                # One account holds every stream here, so the stream name carries the namespace.
                "name": f"{namespace}-{name}",
                "description": f"Stream {namespace}/{name}",
                "subjects": [f"city.{namespace}.{name}", f"city.{namespace}.{name}.>"],
                "storage": "file",
                "retention": "limits",
                "discard": "old",
                "replicas": 1,
                **LIMITS,
            },
        }

    def counters(self) -> dict[str, float]:
        return {}

    def split(self, before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        self.process.stop()


def controller_binary() -> Path:
    binary = paths.bin_dir() / "jetstream-controller"
    stamp = paths.bin_dir() / ".jetstream-controller.version"
    if not binary.exists() or _text(stamp).strip() != f"v{NACK_VERSION}":
        raise RuntimeError(f"NACK's jetstream-controller v{NACK_VERSION} is not built: hack/peers/nack.sh")
    return binary


def nack_crds() -> list[dict[str, Any]]:
    """NACK's CRDs (deploy/crds.yml) from the pinned module source in the Go module cache."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{NACK_MODULE}@v{NACK_VERSION}"],
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"go mod download {NACK_MODULE}@v{NACK_VERSION}: {out.stderr.strip()}")
    path = Path(json.loads(out.stdout)["Dir"]) / "deploy" / "crds.yml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


async def _push_account(b: Backends) -> None:
    """NACK's account (JetStream on, nothing limited), pushed like cityhub pushes a department's."""
    keys = Keys(b.secret)
    token = jwt.account_jwt(
        keys.account(NACK_ACCOUNT),
        keys.operator,
        NACK_ACCOUNT,
        {"limits": jwt.unlimited_account_limits(jetstream=True)},
    )
    nc = await nats.connect(b.nats.url, user_credentials=str(b.system_creds), connect_timeout=10)
    try:
        reply = json.loads((await nc.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=10)).data)
    finally:
        await nc.close()
    if reply.get("error"):
        raise RuntimeError(f"pushing NACK's account: {reply['error']}")


def _answers(probe: Callable[[], Any]) -> bool:
    try:
        probe()
        return True
    except OSError:
        return False


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
