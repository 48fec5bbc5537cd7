"""The real node's NetworkPolicy engine, a host process beside kube-proxy (`real_node.up` starts it):

    python -m cityhub.embedded_cluster.netpol --kubeconfig K --node cityhub-real-0 --health-port P

It watches Pods, Namespaces and NetworkPolicies; on any change (and every --resync seconds, which also
repairs rules someone removed) it compiles the whole ruleset (`netpol_rules`) and applies it with one
`iptables-restore --noflush` when it differs from what the kernel has. Its jump stays the first rule of
FORWARD, so kube-proxy's and CNI's ACCEPT rules only see packets the policies allowed.

GET /healthz on 127.0.0.1:P: 200 once the first ruleset is applied (the node does not report Ready
before), with what was applied last; 503 before. Rules stay in place when the engine stops (closed, not
open, while it restarts); `cityhub cluster down` removes them with the node's other chains.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cityhub.embedded_cluster.netpol_rules import MAIN, PREFIX, Cluster, Pod, Ruleset, compile_rules

log = logging.getLogger("cityhub.netpol")
JUMP = ["-j", MAIN]


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


class Kernel:
    """The filter table, through the iptables commands (the same backend as kube-proxy's)."""

    def chains(self) -> dict[str, int]:
        """Our chains → their rule count."""
        out = _run(["iptables", "-w", "-t", "filter", "-S"]).stdout.splitlines()
        counts: dict[str, int] = {}
        for line in out:
            words = line.split()
            if len(words) > 1 and words[0] in ("-N", "-A") and words[1].startswith(MAIN):
                counts[words[1]] = counts.get(words[1], 0) + (words[0] == "-A")
        return counts

    def restore(self, text: str) -> None:
        result = _run(["iptables-restore", "-w", "--noflush"], text)
        if result.returncode != 0:
            raise RuntimeError(f"iptables-restore: {result.stderr.strip()[:500]}")

    def jump_first(self) -> bool:
        """Make our jump the first rule of FORWARD; True if it had to be (re)placed."""
        rules = [
            r for r in _run(["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines() if r.startswith("-A")
        ]
        if rules[:1] == [f"-A FORWARD -j {MAIN}"] and rules.count(f"-A FORWARD -j {MAIN}") == 1:
            return False
        while _run(["iptables", "-w", "-D", "FORWARD", *JUMP]).returncode == 0:
            pass
        result = _run(["iptables", "-w", "-I", "FORWARD", "1", *JUMP])
        if result.returncode != 0:
            raise RuntimeError(f"iptables -I FORWARD: {result.stderr.strip()}")
        return True


class Engine:
    def __init__(self, kubeconfig: Path, node: str, kernel: Kernel | None = None) -> None:
        from kubernetes import client, config

        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.net = client.NetworkingV1Api(self.api)
        self.node = node
        self.kernel = kernel or Kernel()
        self.applied: Ruleset | None = None
        self.last: dict[str, Any] = {}
        self.changed = threading.Event()
        self.stopping = threading.Event()

    def _items(self, list_call: Callable[..., Any]) -> list[dict[str, Any]]:
        response = list_call(_preload_content=False, _request_timeout=30)
        return json.loads(response.data)["items"]

    def snapshot(self) -> Cluster:
        namespaces = {
            n["metadata"]["name"]: n["metadata"].get("labels") or {}
            for n in self._items(self.core.list_namespace)
        }
        pods = [p for p in map(Pod.of, self._items(self.core.list_pod_for_all_namespaces)) if p]
        policies = self._items(self.net.list_network_policy_for_all_namespaces)
        return Cluster(namespaces, pods, policies)

    def sync(self) -> bool:
        """Apply the ruleset if it changed or the kernel lost some of it; True if anything was written."""
        t0 = time.monotonic()
        cluster = self.snapshot()
        ruleset = compile_rules(cluster, self.node)
        present = self.kernel.chains()
        intact = (
            self.applied is not None
            and all(present.get(c) == len(r) for c, r in ruleset.chains.items())
            and not set(present) - set(ruleset.chains)
        )
        wrote = False
        if self.applied is None or self.applied.chains != ruleset.chains or not intact:
            self.kernel.restore(ruleset.restore_text(c for c in present if c.startswith(PREFIX)))
            wrote = True
        wrote = self.kernel.jump_first() or wrote
        self.applied = ruleset
        took = time.monotonic() - t0
        self.last = {
            "pods": len(cluster.pods),
            "policies": len(cluster.policies),
            "chains": len(ruleset.chains),
            "rules": ruleset.rule_count,
            "seconds": round(took, 4),
            "at": time.time(),
        }
        if wrote:
            log.info(json.dumps({"event": "applied", **self.last}))
        return wrote

    def _watch(self, list_call: Callable[..., Any]) -> None:
        from kubernetes import watch

        while not self.stopping.is_set():
            try:
                for _ in watch.Watch().stream(list_call, timeout_seconds=300, _request_timeout=330):
                    self.changed.set()
                    if self.stopping.is_set():
                        return
            except Exception as e:  # the API server restarting, a watch expiring: watch again
                log.warning(json.dumps({"event": "watch-error", "error": str(e)[:200]}))
                self.stopping.wait(1.0)

    def run(self, resync: float) -> None:
        for call in (
            self.core.list_namespace,
            self.core.list_pod_for_all_namespaces,
            self.net.list_network_policy_for_all_namespaces,
        ):
            threading.Thread(target=self._watch, args=(call,), daemon=True).start()
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as e:  # keep the rules applied last; try again on the next change or resync
                log.error(json.dumps({"event": "sync-error", "error": str(e)[:500]}))
            self.changed.wait(resync)
            self.changed.clear()
            self.stopping.wait(0.05)  # a burst of events (a Deployment's pods) makes one sync


def serve_health(engine: Engine, port: int) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/healthz" and engine.applied is not None
            body = json.dumps(engine.last if ok else {"applied": False}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cityhub-netpol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", required=True, help="the node whose pods' rules this engine writes")
    parser.add_argument("--health-port", type=int, required=True)
    parser.add_argument("--resync", type=float, default=30.0, help="seconds between full checks")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format='{"time":"%(asctime)s","level":"%(levelname)s","msg":%(message)s}'
    )
    engine = Engine(args.kubeconfig, args.node)
    serve_health(engine, args.health_port)

    def stop(*_: object) -> None:
        engine.stopping.set()
        engine.changed.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    engine.run(args.resync)


if __name__ == "__main__":
    main()
