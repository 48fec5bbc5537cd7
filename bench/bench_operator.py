"""Benchmark of the component operator with the messaging driver (embedded cluster + real nats-server).

    .venv/bin/python bench/bench_operator.py                       # 1, 100, 1000 requests; RSS at 1000, 5000
    .venv/bin/python bench/bench_operator.py --sizes 1,100 --rss-at 200 --json out.json

Reports, for batches of 1, 100 and 1000 MessagingChannels spread over 50 departments:
request-to-Ready latency (p50/p95/p99, from the request appearing in a watch to Ready=True in the same
watch) and throughput (requests Ready per second over the batch); the operator's resident memory with 1000
and 5000 requests; and where a reconcile's time goes: the NATS backend (driver calls), the operator's own
Kubernetes writes (the Secret), and the rest of the handler (from the operator's Prometheus metrics).
kopf's own work around a handler (watch, status patch, progress annotations) is the difference between the
end-to-end latency and the handler time.

Starts an embedded cluster in a temporary state directory unless --kubeconfig is given; stops what it started.
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
from component_types.messaging.local import NatsServer

OFFERING = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ComponentOffering",
    "metadata": {"name": "messaging"},
    "spec": {
        "componentType": "messaging",
        "defaultPlan": "bench",
        "plans": [
            {
                "name": "bench",
                "limits": {"maxAge": "1d", "maxBytes": "8Mi", "maxMessages": 100000},
                "defaults": {"maxAge": "1h", "maxBytes": "1Mi", "maxMessages": 1000},
            }
        ],
    },
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
    docs = [testing.channel(departments[i % len(departments)], f"{prefix}-{i}") for i in range(count)]
    keys = [f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs]
    started = time.monotonic()
    for i in range(0, len(docs), 500):
        testing.apply(kubeconfig, docs[i : i + 500])
    testing.wait_for(lambda: watcher.count_ready(keys) == count, timeout, f"{count} requests Ready", 0.1)
    after = metrics(port)
    with watcher.lock:
        latencies = [watcher.ready[k] - watcher.seen[k] for k in keys]
        first, last = min(watcher.seen[k] for k in keys), max(watcher.ready[k] for k in keys)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    reconciles = delta('cityhub_reconcile_time_seconds_count{controller="MessagingChannel"}')
    handler = delta('cityhub_reconcile_time_seconds_sum{controller="MessagingChannel"}')
    backend = delta('cityhub_backend_time_seconds_sum{controller="MessagingChannel",operation="ensure"}')
    secret = delta('cityhub_kubernetes_time_seconds_sum{controller="MessagingChannel",operation="secret"}')
    return {
        "requests": count,
        "latency_p50_s": round(pct(latencies, 50), 3),
        "latency_p95_s": round(pct(latencies, 95), 3),
        "latency_p99_s": round(pct(latencies, 99), 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3),
        "throughput_per_s": round(count / max(last - first, 1e-6), 1),
        "wall_s": round(time.monotonic() - started, 2),
        "reconciles": int(reconciles),
        "handler_mean_ms": round(1000 * handler / max(reconciles, 1), 2),
        "backend_mean_ms": round(1000 * backend / max(reconciles, 1), 2),
        "secret_mean_ms": round(1000 * secret / max(reconciles, 1), 2),
        "backend_share": round(backend / handler, 3) if handler else None,
        "secret_share": round(secret / handler, 3) if handler else None,
        "operator_share": round((handler - backend - secret) / handler, 3) if handler else None,
    }


def messaging_operator(
    work: Path, kubeconfig: Path, extra: dict[str, str] | None = None
) -> tuple[NatsServer, testing.OperatorProcess, int]:
    """A nats-server (started) and the operator serving MessagingChannels from it (not started yet), with its
    metrics port: what the operator benches (this one, soak_operator.py) measure."""
    secret = b"bench-secret-" + os.urandom(24).hex().encode()
    nats = NatsServer(work / "nats", secret).start()
    (work / "secret").write_text(secret.decode())
    port = free_port()
    env = {
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_NATS_URL": nats.url,
        "CITYHUB_NATS_SECRET_FILE": str(work / "secret"),
        "CITYHUB_METRICS_PORT": str(port),
        "CITYHUB_LOG_FORMAT": "json",
        **(extra or {}),
    }
    return nats, testing.OperatorProcess(kubeconfig, env, work / "operator.log"), port


def serve(kubeconfig: Path, operator: testing.OperatorProcess, port: int, departments: int) -> list[str]:
    """CRDs, the messaging offering and `departments` department namespaces; then the operator, up when its
    /metrics answers. Returns the namespaces."""
    testing.install_crds(kubeconfig)
    testing.apply(kubeconfig, [OFFERING])
    names = [f"dept-{i:02d}" for i in range(departments)]
    testing.ensure_namespaces(kubeconfig, names)
    operator.start()
    testing.wait_for(lambda: metrics_up(port), 60, "the operator's /metrics")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,100,1000", help="batch sizes, run in order")
    parser.add_argument("--rss-at", default="1000,5000", help="total requests at which to measure RSS")
    parser.add_argument("--departments", type=int, default=50)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rss_at = [int(s) for s in args.rss_at.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="cityhub-bench-"))
    started = cluster_for(work, args.kubeconfig)
    if started is None:
        return 1
    kubeconfig, stop_cluster = started
    nats, operator, port = messaging_operator(work, kubeconfig, {"CITYHUB_DRIFT_INTERVAL": "600"})
    results: dict[str, Any] = {"batches": [], "rss": []}
    try:
        departments = serve(kubeconfig, operator, port, args.departments)
        api = testing.api(kubeconfig)
        watcher = Watcher(api, "messagingchannels")
        watcher.start()
        total = 0
        for n, size in enumerate(sizes):
            r = batch(kubeconfig, watcher, f"b{n}", size, departments, port, args.timeout)
            results["batches"].append(r)
            total += size
            print(json.dumps(r), flush=True)
            for target in [
                t for t in rss_at if t <= total and t not in [x["requests"] for x in results["rss"]]
            ]:
                results["rss"].append({"requests": total, "target": target, "rss_mib": _rss(operator)})
                print(json.dumps(results["rss"][-1]), flush=True)
        for target in rss_at:
            if target > total:
                r = batch(
                    kubeconfig, watcher, f"fill{target}", target - total, departments, port, args.timeout
                )
                r["note"] = f"filling up to {target}"
                results["batches"].append(r)
                print(json.dumps(r), flush=True)
                total = target
                time.sleep(5)
                results["rss"].append({"requests": total, "target": target, "rss_mib": _rss(operator)})
                print(json.dumps(results["rss"][-1]), flush=True)
        watcher.stopped = True
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    finally:
        operator.stop()
        nats.stop()
        stop_cluster()
    _report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _rss(operator: testing.OperatorProcess) -> float:
    return round(operator.rss_bytes() / 2**20, 1)


def _report(results: dict[str, Any]) -> None:
    print("\nrequests  p50 s   p95 s   p99 s   req/s   handler ms  backend  secret  operator")
    for r in results["batches"]:
        print(
            f"{r['requests']:>8}  {r['latency_p50_s']:>6}  {r['latency_p95_s']:>6}  {r['latency_p99_s']:>6}  "
            f"{r['throughput_per_s']:>6}  {r['handler_mean_ms']:>10}  {r['backend_share']:>7}  "
            f"{r['secret_share']:>6}  {r['operator_share']:>8}"
        )
    for m in results["rss"]:
        print(f"operator RSS with {m['requests']} requests: {m['rss_mib']} MiB")


if __name__ == "__main__":
    sys.exit(main())
