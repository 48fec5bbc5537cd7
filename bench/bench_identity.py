"""Benchmark of IdentityClient request-to-Ready latency (embedded cluster + real Keycloak + the operator).

    .venv/bin/python bench/bench_identity.py                      # batches of 1 and 100 clients
    .venv/bin/python bench/bench_identity.py --sizes 1,100 --json out.json

For each batch of confidential IdentityClients (spread over 10 departments, two roles each), prints the
request-to-Ready latency (median, p95, max: from the request appearing in a watch to Ready=True in the same
watch), the throughput, and the mean time of the driver's ensure (Keycloak admin calls) from the
operator's metrics. A first single client, reported apart, pays for creating the city's realm.

Starts an embedded cluster and a local Keycloak in a temporary directory (unless --kubeconfig is given);
stops what it started, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from readiness import Watcher, cluster_for, metrics, metrics_up, pct

from cityhub import testkit as testing
from cityhub.supervisor import free_port
from cityhub_api.api import GROUP, VERSION
from component_types.identity.keycloak import KeycloakMissing
from component_types.identity.local import KeycloakServer

PLURAL = "identityclients"
OFFERING = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ComponentOffering",
    "metadata": {"name": "identity"},
    "spec": {
        "componentType": "identity",
        "defaultPlan": "standard",
        "plans": [
            {
                "name": "standard",
                "limits": {"accessTokenLifespan": "1h", "sessionMaxLifespan": "1d"},
                "defaults": {"accessTokenLifespan": "5m", "sessionMaxLifespan": "10h"},
            }
        ],
    },
}


def doc(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "IdentityClient",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"offering": "identity", "roles": ["viewer", "editor"]},
    }


def batch(
    kubeconfig: Path,
    watcher: Watcher,
    prefix: str,
    count: int,
    departments: list[str],
    port: int,
    timeout: float,
) -> dict[str, Any]:
    before = metrics(port)
    docs = [doc(departments[i % len(departments)], f"{prefix}-{i}") for i in range(count)]
    keys = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs]
    testing.apply(kubeconfig, docs)
    testing.wait_for(lambda: watcher.count_ready(keys) == count, timeout, f"{count} clients Ready", 0.1)
    after = metrics(port)
    with watcher.lock:
        latencies = [watcher.ready[k] - watcher.seen[k] for k in keys]
        first, last = min(watcher.seen[k] for k in keys), max(watcher.ready[k] for k in keys)
    label = '{controller="IdentityClient",operation="ensure"}'
    calls = after.get(f"cityhub_backend_time_seconds_count{label}", 0) - before.get(
        f"cityhub_backend_time_seconds_count{label}", 0
    )
    spent = after.get(f"cityhub_backend_time_seconds_sum{label}", 0) - before.get(
        f"cityhub_backend_time_seconds_sum{label}", 0
    )
    return {
        "clients": count,
        "latency_median_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(pct(latencies, 95), 3),
        "latency_max_s": round(max(latencies), 3),
        "throughput_per_s": round(count / max(last - first, 1e-6), 2),
        "ensure_calls": int(calls),
        "ensure_mean_ms": round(1000 * spent / max(calls, 1), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,100", help="batch sizes, run in order")
    parser.add_argument("--departments", type=int, default=10)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cityhub-bench-identity-"))
    try:
        keycloak = KeycloakServer.from_template(work / "keycloak")
    except KeycloakMissing as e:
        print(f"bench_identity: {e}", file=sys.stderr)
        return 1
    started = cluster_for(work, args.kubeconfig)
    if started is None:
        return 1
    kubeconfig, stop_cluster = started
    port = free_port()
    operator = testing.OperatorProcess(
        kubeconfig,
        {
            **keycloak.operator_env(),
            "CITYHUB_COMPONENTS": "identity",
            "CITYHUB_METRICS_PORT": str(port),
            "CITYHUB_LOG_FORMAT": "json",
            "CITYHUB_DRIFT_INTERVAL": "600",
            "CITYHUB_PROBE_INTERVAL": "0",
        },
        work / "operator.log",
    )
    results: dict[str, Any] = {"batches": []}
    try:
        started = time.monotonic()
        keycloak.start()
        results["keycloak_start_s"] = round(time.monotonic() - started, 1)
        testing.install_crds(kubeconfig)
        testing.apply(kubeconfig, [OFFERING])
        departments = [f"dept-{i:02d}" for i in range(args.departments)]
        testing.ensure_namespaces(kubeconfig, departments)
        operator.start()
        testing.wait_for(lambda: metrics_up(port), 60, "the operator's /metrics")
        watcher = Watcher(testing.api(kubeconfig), PLURAL)
        watcher.start()
        first = batch(kubeconfig, watcher, "first", 1, departments, port, args.timeout)
        results["first_client"] = first
        print(json.dumps({"first_client": first}), flush=True)
        for n, size in enumerate(int(s) for s in args.sizes.split(",") if s):
            r = batch(kubeconfig, watcher, f"b{n}", size, departments, port, args.timeout)
            results["batches"].append(r)
            print(json.dumps(r), flush=True)
        watcher.stopped = True
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    finally:
        operator.stop()
        keycloak.stop()
        stop_cluster()
    print(f"Keycloak start (from the cached initial database): {results.get('keycloak_start_s')} s")
    first = results.get("first_client") or {}
    print(f"First client (creates the realm): {first.get('latency_median_s')} s to Ready")
    print(f"{'clients':>8} {'median s':>9} {'p95 s':>7} {'max s':>7} {'per s':>7} {'ensure ms':>10}")
    for r in results["batches"]:
        print(
            f"{r['clients']:>8} {r['latency_median_s']:>9} {r['latency_p95_s']:>7} {r['latency_max_s']:>7} "
            f"{r['throughput_per_s']:>7} {r['ensure_mean_ms']:>10}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
