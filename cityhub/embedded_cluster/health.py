"""Whether a process of the embedded cluster is healthy: etcd's /health, the apiserver's /readyz (as admin,
which also proves client-certificate auth works), the others' /healthz; all over TLS checked by the CA."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from cityhub import supervisor
from cityhub.embedded_cluster.errors import ClusterError
from cityhub.embedded_cluster.network import HOST
from cityhub.embedded_cluster.pki import Pki

Check = Callable[[], tuple[bool, str]]
"""A health check: (healthy, detail for the user)."""


def ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def https_get(port: int, path: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> tuple[int, str]:
    """GET https://HOST:port/path; (0, reason) when nothing answers. http.client: no proxy env applies."""
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, str(e) or type(e).__name__
    finally:
        conn.close()


def health_check(name: str, pki: Pki, port: int) -> Check:
    """A check returning (healthy, detail) for one process."""
    if name == "etcd":
        ctx = ssl_context(pki.ca, pki.crt("apiserver-etcd-client"), pki.key("apiserver-etcd-client"))

        def etcd() -> tuple[bool, str]:
            status, body = https_get(port, "/health", ctx)
            try:
                return status == 200 and json.loads(body).get("health") == "true", body.strip()
            except ValueError:
                return False, body.strip()

        return etcd
    if name == "kube-apiserver":
        # /readyz with the admin identity: it also proves client-cert auth works end to end.
        ctx, path = ssl_context(pki.ca, pki.crt("admin"), pki.key("admin")), "/readyz"
    else:
        ctx, path = ssl_context(pki.ca), "/healthz"

    def http_ok() -> tuple[bool, str]:
        status, body = https_get(port, path, ctx)
        return status == 200, f"{path}: {status or 'no answer'} {body.strip()[:300]}"

    return http_ok


def wait_healthy(rec: supervisor.Record, check: Check, timeout: float) -> float:
    """Seconds until `check` passed; fails early (with the log) when the process exits meanwhile, and stops
    it when it does not get healthy in time."""
    last = ""

    def healthy() -> bool:
        nonlocal last
        ok, last = check()
        return ok

    t0 = time.monotonic()
    try:
        return supervisor.wait_ready(rec, healthy, timeout, interval=0.3)
    except supervisor.ProcessFailed as e:
        # The supervisor's message names the process and shows its log; a timeout also gets the last check.
        timed_out = time.monotonic() - t0 >= timeout
        detail = f"\n  last check: {last}" if timed_out and last else ""
        raise ClusterError(f"start {rec.name}", f"{e}{detail}") from e
