"""cityhub's messaging operator vs NACK's jetstream-controller: the same streams on the same nats-server.

    bash hack/peers/nack.sh                                   # once: builds the peer (benchmarks only)
    .venv/bin/python bench/peer_nack.py                       # 1000 streams over 50 namespaces, A B once
    .venv/bin/python bench/peer_nack.py --quick               # 50 streams over 10 namespaces
    .venv/bin/python bench/peer_nack.py --repeats 2 --json bench/results-peer-nack.json

Each run starts from nothing: a new embedded cluster (etcd + kube-apiserver + kwok) and a new nats-server
(JetStream, the decentralized-auth config cityhub renders), the side's CRDs and namespaces, its controller,
one warm-up request; then N requests are applied at once and timed until every one is Ready. Runs alternate
cityhub, NACK, cityhub, NACK, … so the machine's noise hits both sides alike.

Per run: wall time to all-Ready, request-to-Ready latency p50/p99 (from a watch: the request appearing to
its Ready=True condition), throughput, the controller's CPU seconds over the batch (/proc utime+stime) and
peak RSS (VmHWM), nats-server's CPU seconds over the batch, the API server's write requests
(apiserver_request_total by verb, leases and the bench's own server-side applies left out) and
nats-server's JetStream API calls and received messages, per request.
cityhub's handler time is split into NATS backend / Secret write / rest (its own metrics).

Prints a Markdown table (medians per side, ratio cityhub / NACK); --json writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peer_nack_probes import GroupWatcher, api_writes, cpu_seconds, difference, memory_mib, nats_counters
from peer_nack_sides import NACK_VERSION, Backends, CityhubSide, NackSide, start_backends
from readiness import pct

from cityhub import testkit as testing

Side = CityhubSide | NackSide
NATS_PROBE_MESSAGES = 2
"""Messages the counter reads themselves add to nats-server's received count between two readings."""


def measure(side: Side, b: Backends, watcher: GroupWatcher, names: list[tuple[str, str]], timeout: float):
    """Apply one request per (namespace, name) at once and wait until all are Ready; what it cost."""
    docs = [side.doc(ns, name) for ns, name in names]
    keys = [f"{ns}/{name}" for ns, name in names]
    assert b.nats.record is not None
    nats_pid = b.nats.record.pid
    cpu0, nats_cpu0, writes0 = cpu_seconds(side.pid), cpu_seconds(nats_pid), api_writes(b.kubeconfig)
    nats0, own0 = nats_counters(b.nats.url, b.system_creds), side.counters()
    started = time.monotonic()
    for i in range(0, len(docs), 500):
        testing.apply(b.kubeconfig, docs[i : i + 500])
    applied = time.monotonic() - started
    testing.wait_for(lambda: watcher.count_ready(keys) == len(keys), timeout, f"{len(keys)} Ready", 0.1)
    wall = time.monotonic() - started
    cpu1, nats_cpu1 = cpu_seconds(side.pid), cpu_seconds(nats_pid)
    own1, nats1 = side.counters(), nats_counters(b.nats.url, b.system_creds)
    writes = difference(api_writes(b.kubeconfig), writes0)
    with watcher.lock:
        latencies = [watcher.ready[k] - watcher.seen[k] for k in keys]
        first, last = min(watcher.seen[k] for k in keys), max(watcher.ready[k] for k in keys)
    n = len(keys)
    controller_writes = sum(v for k, v in writes.items() if not k.startswith("APPLY "))
    return {
        "requests": n,
        "wall_s": round(wall, 2),
        "applied_s": round(applied, 2),
        "latency_p50_s": round(pct(latencies, 50), 3),
        "latency_p99_s": round(pct(latencies, 99), 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3),
        "throughput_per_s": round(n / max(last - first, 1e-6), 1),
        "cpu_s": round(cpu1 - cpu0, 2),
        "cpu_ms_per_request": round(1000 * (cpu1 - cpu0) / n, 2),
        **memory_mib(side.pid),
        "nats_server_cpu_s": round(nats_cpu1 - nats_cpu0, 2),
        "api_writes_per_request": round(controller_writes / n, 2),
        "api_writes": writes,
        "jetstream_api_per_request": round((nats1["jetstream_api"] - nats0["jetstream_api"]) / n, 2),
        "jetstream_api_errors": nats1["jetstream_api_errors"] - nats0["jetstream_api_errors"],
        "nats_messages_per_request": round(
            (nats1["messages_in"] - nats0["messages_in"] - NATS_PROBE_MESSAGES) / n, 2
        ),
        "streams_on_server": nats1["streams"],
        **side.split(own0, own1),
    }


def run(
    kind: str, count: int, namespaces: list[str], timeout: float, work: Path, worker_limit: int = 0
) -> dict[str, Any]:
    """One side on fresh backends: install, start, warm up, measure, and stop everything."""
    print(f"[peer-nack] {kind}: {count} requests over {len(namespaces)} namespaces ({work})", flush=True)
    b = start_backends(work)
    side: Side = CityhubSide(b, worker_limit) if kind == "cityhub" else NackSide(b)
    watcher: GroupWatcher | None = None
    try:
        side.install(namespaces)
        side.start()
        watcher = GroupWatcher(testing.api(b.kubeconfig), side.group, side.version, side.plural)
        watcher.start()
        # One request first: connections, caches and (cityhub) the first account exist before the clock runs.
        warm = time.monotonic()
        testing.apply(b.kubeconfig, [side.doc(namespaces[0], "warm-up")])
        testing.wait_for(lambda: watcher.count_ready([f"{namespaces[0]}/warm-up"]) == 1, 120, "warm-up Ready")
        warm_s = time.monotonic() - warm
        names = [(namespaces[i % len(namespaces)], f"s-{i}") for i in range(count)]
        result = {"side": kind, "warm_up_s": round(warm_s, 2), **measure(side, b, watcher, names, timeout)}
        if kind == "cityhub":
            result["worker_limit"] = worker_limit
        print(f"[peer-nack] {json.dumps({k: v for k, v in result.items() if k != 'api_writes'})}", flush=True)
        return result
    finally:
        if watcher is not None:
            watcher.stopped = True
        side.stop()
        b.stop()


ROWS = [
    ("time to all Ready, s", "wall_s"),
    ("last request written (kubectl apply returned), s", "applied_s"),
    ("all Ready after the last request was written, s", "after_written_s"),
    ("latency p50, s", "latency_p50_s"),
    ("latency p99, s", "latency_p99_s"),
    ("throughput, Ready/s", "throughput_per_s"),
    ("controller CPU, s", "cpu_s"),
    ("controller CPU per request, ms", "cpu_ms_per_request"),
    ("controller peak RSS, MiB", "peak_rss_mib"),
    ("nats-server CPU, s", "nats_server_cpu_s"),
    ("API server writes per request", "api_writes_per_request"),
    ("JetStream API calls per request", "jetstream_api_per_request"),
    ("messages into nats-server per request", "nats_messages_per_request"),
]


def value(run: dict[str, Any], key: str) -> float | None:
    if key == "after_written_s" and "applied_s" in run:
        return round(run["wall_s"] - run["applied_s"], 2)
    return run.get(key)


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [v for v in (value(r, key) for r in runs) if v is not None]
    return round(statistics.median(values), 3) if values else None


def table(results: dict[str, Any]) -> str:
    a = [r for r in results["runs"] if r["side"] == "cityhub"]
    b = [r for r in results["runs"] if r["side"] == "nack"]
    n = results["requests"]
    lines = [
        f"{n} streams over {results['namespaces']} namespaces; medians of {len(a)} cityhub and {len(b)} NACK "
        "run(s), interleaved",
        "",
        f"| | cityhub (MessagingChannel) | NACK v{NACK_VERSION} (Stream) | ratio cityhub / NACK |",
        "|---|---:|---:|---:|",
    ]
    for label, key in ROWS:
        x, y = median(a, key), median(b, key)
        ratio = f"{x / y:.2f}" if x is not None and y else "-"
        lines.append(f"| {label} | {x} | {y} | {ratio} |")
    if a:
        split = ", ".join(
            f"{k.removesuffix('_mean_ms')} {median(a, k)} ms"
            for k in ("handler_mean_ms", "backend_mean_ms", "secret_mean_ms", "rest_mean_ms")
        )
        lines += ["", f"cityhub handler time per request (median of runs): {split}"]
    wall_a, wall_b = median(a, "wall_s"), median(b, "wall_s")
    if wall_a is not None and wall_b:
        verdict = "met" if wall_a <= wall_b else "missed"
        figure = f"{wall_a} s vs {wall_b} s, ratio {wall_a / wall_b:.2f}"
        lines += [f"goal cityhub wall time <= NACK's: {verdict} ({figure})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 streams over 10 namespaces, one run each")
    parser.add_argument("--requests", type=int, default=None, help="streams per run (default 1000)")
    parser.add_argument("--namespaces", type=int, default=None, help="namespaces (default 50)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, interleaved")
    parser.add_argument("--sides", default="cityhub,nack", help="which sides, in the order of each round")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--worker-limit", type=int, default=0, help="cityhub's CITYHUB_WORKER_LIMIT")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories (logs, data)")
    parser.add_argument("--table-from", type=Path, default=None, help="only print the table of a --json file")
    args = parser.parse_args(argv)
    if args.table_from:
        print(table(json.loads(args.table_from.read_text())))
        return 0
    count = args.requests or (50 if args.quick else 1000)
    spaces = args.namespaces or (10 if args.quick else 50)
    namespaces = [f"dept-{i:02d}" for i in range(spaces)]
    sides = [s for s in args.sides.split(",") if s]
    if any(s not in ("cityhub", "nack") for s in sides):
        parser.error("--sides: cityhub and/or nack")
    results: dict[str, Any] = {
        "requests": count,
        "namespaces": spaces,
        "nack_version": NACK_VERSION,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "runs": [],
    }
    root = Path(tempfile.mkdtemp(prefix="cityhub-peer-nack-"))
    for r in range(args.repeats):
        for kind in sides:
            work = root / f"{r}-{kind}"
            results["runs"].append(run(kind, count, namespaces, args.timeout, work, args.worker_limit))
    # Only a run that failed leaves its directory behind (its logs say why); --keep keeps all.
    if args.keep:
        print(f"[peer-nack] logs and data in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    text = table(results)
    results["table"] = text
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
