"""`cityhub dashboard`: the live hub capability dashboard (中枢能力仪表盘) in a browser.

    cityhub dashboard [--prometheus URL] [--kubeconfig PATH] [--stack dev] [--port 8686] [--refresh 10]
    cityhub dashboard --once            the state as JSON on stdout, then exit

Serves on 127.0.0.1 (stdlib http.server: the CLI uses no HTTP library):
    /             the page (self-contained; a small inline script refreshes it)
    /fragment     the page's body, what the script fetches
    /api/state    the same state as JSON (schema cityhub.io/dashboard/v1)
    /healthz      ok

Figures come from the Prometheus that scrapes the operator (--prometheus, else CITYHUB_PROMETHEUS_URL, else
on the embedded default one the dashboard starts next to the local operator: local.py) and the API server
(--kubeconfig, else $KUBECONFIG, else the embedded cluster's); departments, city, 平/急 mode, objectives and
clusters from the stack config (an edge cluster is read with its own kubeconfig and context, every
EDGE_SECONDS).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cityhub.dashboard import local, page
from cityhub.dashboard.cluster import ClusterState
from cityhub.dashboard.cluster import read as read_cluster
from cityhub.dashboard.clusters import read_separately, topology
from cityhub.dashboard.state import Sources, collect, maturity
from cityhub.embedded_cluster.layout import kubeconfig_path
from cityhub.report.command import ReportSettings, stack_facts
from cityhub.report.query import Prometheus
from cityhub.supervisor import ProcessFailed
from cityhub_api.settings import Env, SettingError

CACHE_SECONDS = 2.0
"""A state younger than this is served again: many open tabs cost Prometheus one set of queries."""
MATURITY_SECONDS = 60.0
"""The maturity assessment reads the whole cluster and the stack; levels move over days, not seconds."""
EDGE_SECONDS = MATURITY_SECONDS
"""Clusters other than the dashboard's own (edges) are read this often: an unreachable one costs its timeout
once a minute, not on every refresh."""


class Dashboard:
    """The state, collected at most once per CACHE_SECONDS, shared by the server's threads."""

    def __init__(self, sources: Sources, refresh_seconds: int) -> None:
        self.sources, self.refresh_seconds = sources, refresh_seconds
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None
        self._maturity: dict[str, Any] | None = None
        self._edges: dict[str, ClusterState] | None = None
        self._at = self._maturity_at = self._edges_at = 0.0

    def state(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._maturity is None or now - self._maturity_at > MATURITY_SECONDS:
                src = self.sources
                self._maturity = maturity(src.prometheus.url, src.kubeconfig, src.stack)
                self._maturity_at = now
            if self._edges is None or now - self._edges_at > EDGE_SECONDS:
                src = self.sources
                self._edges = read_separately(src.topology, src.kubeconfig, read_cluster)
                self._edges_at = now
            if self._state is None or now - self._at > CACHE_SECONDS:
                self._state = collect(self.sources, maturity_section=self._maturity, edges=self._edges)
                self._at = now
            return self._state


def handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cityhub-dashboard"

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, "ok\n", "text/plain")
            elif path == "/api/state":
                self._send(
                    200, json.dumps(dashboard.state(), ensure_ascii=False, indent=2), "application/json"
                )
            elif path == "/fragment":
                self._send(200, page.fragment(dashboard.state()), "text/html")
            elif path in ("/", "/index.html"):
                self._send(200, page.page(dashboard.state(), dashboard.refresh_seconds), "text/html")
            elif path == "/favicon.ico":
                self._send(204, "", "image/x-icon")  # no console error for the icon the browser asks for
            else:
                self._send(404, "not found\n", "text/plain")

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per refresh would drown the terminal

    return Handler


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cityhub dashboard", description="中枢能力仪表盘 / the live hub dashboard"
    )
    p.add_argument(
        "--prometheus",
        help="Prometheus URL (default: CITYHUB_PROMETHEUS_URL, else one started for the local operator)",
    )
    p.add_argument("--kubeconfig", type=Path, help="default: $KUBECONFIG, else the embedded cluster's")
    p.add_argument("--stack", default="dev", help="stack whose departments and mode to show (default dev)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8686, help="port (default 8686; 0 picks a free one)")
    p.add_argument(
        "--refresh", type=int, default=10, help="seconds between the page's refreshes (default 10)"
    )
    p.add_argument("--once", action="store_true", help="print the state as JSON and exit")
    return p


def sources_of(ns: argparse.Namespace) -> Sources:
    settings = ReportSettings.from_env()
    url = (ns.prometheus or settings.prometheus_url).rstrip("/")
    if not url:
        url = local.prometheus_url()
        print(
            f"Prometheus of the embedded default: {url} (`cityhub operator stop` stops it)", file=sys.stderr
        )
    kubeconfig = ns.kubeconfig or Env().path("KUBECONFIG", kubeconfig_path())
    facts = stack_facts(ns.stack)
    return Sources(Prometheus(url, settings.timeout), kubeconfig, ns.stack, facts, topology(ns.stack))


def main(argv: list[str]) -> int:
    ns = parser().parse_args(argv)
    try:
        if ns.refresh < 1:
            raise ValueError(f"Invalid --refresh {ns.refresh}: needs to be seconds, at least 1")
        sources = sources_of(ns)
    except (ValueError, SettingError, ProcessFailed) as e:
        print(f"cityhub dashboard: {e}", file=sys.stderr)
        return 1
    dashboard = Dashboard(sources, ns.refresh)
    if ns.once:
        print(json.dumps(dashboard.state(), ensure_ascii=False, indent=2))
        return 0
    try:
        server = ThreadingHTTPServer((ns.host, ns.port), handler(dashboard))
    except OSError as e:
        print(f"cityhub dashboard: cannot listen on {ns.host}:{ns.port} ({e}); try --port 0", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(
        f"中枢能力仪表盘 / hub dashboard: http://{host}:{port}/  (JSON: /api/state; Ctrl-C stops)", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
