"""Soak of the component operator with churn: does its memory, or anything else, grow over time?

    .venv/bin/python bench/soak_operator.py                  # 60 minutes, 1000 standing requests, 2 ops/s
    .venv/bin/python bench/soak_operator.py --minutes 5      # a quick look
    .venv/bin/python bench/soak_operator.py --minutes 30 --json bench/soak.json

Starts like bench_operator.py (embedded cluster, real nats-server, `python -m cityhub_operator` with the
messaging driver), creates `--base` MessagingChannels over `--departments` departments and waits for them to
be Ready; then, at `--rate` operations per second for `--minutes`, turns over in equal shares: creates a new
request, updates one (its spec.limits.maxAge: a new generation to reconcile), deletes the oldest churned one —
so the standing population stays the same while every code path (create, update, delete with its finalizer)
runs.

Every `--sample` seconds it records the operator's resident memory, open file descriptors and threads, the
latency of the operations finished in that window (create → Ready, update → Ready for the new generation,
delete → gone) and the load average; at the end a table and the slope of RSS (and fds) per hour by least
squares over the samples after `--warmup` minutes. A leak shows as a steady positive slope; a constant
footprint as a slope near zero against the noise of Python's allocator.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench_operator import messaging_operator, serve
from kubernetes import client, watch
from readiness import cluster_for, pct

from cityhub import testkit as testing
from cityhub_api.api import GROUP, VERSION

PLURAL = "messagingchannels"


class Tracker(threading.Thread):
    """Watches every MessagingChannel; completes the operations the soak is waiting on, with their latency."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.lock = threading.Lock()
        self.pending: dict[str, tuple[str, float, int]] = {}
        """key → (operation, started, generation wanted; 0 for a delete)."""
        self.done: list[tuple[str, float]] = []
        self.stopped = False

    def expect(self, key: str, operation: str, started: float, generation: int = 0) -> None:
        with self.lock:
            self.pending[key] = (operation, started, generation)

    def take(self) -> list[tuple[str, float]]:
        with self.lock:
            out, self.done = self.done, []
        return out

    def run(self) -> None:
        version = ""
        while not self.stopped:
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    timeout_seconds=60,
                    resource_version=version or None,
                )
                for ev in stream:
                    self._event(ev["type"], ev["object"], time.monotonic())
                    version = ev["object"]["metadata"].get("resourceVersion", version)
                    if self.stopped:
                        return
            except Exception as e:  # 410 Gone and dropped watches: list afresh
                version = ""
                print(f"  (watch restarted: {type(e).__name__})", file=sys.stderr)

    def _event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        with self.lock:
            wanted = self.pending.get(key)
            if wanted is None:
                return
            operation, started, generation = wanted
            if operation == "delete":
                finished = kind == "DELETED"
            else:
                status = obj.get("status") or {}
                finished = (
                    int(status.get("observedGeneration") or 0) >= generation
                    and testing.condition(obj, "Ready").get("status") == "True"
                )
            if finished:
                del self.pending[key]
                self.done.append((operation, now - started))


def proc_sample(pid: int) -> dict[str, Any]:
    """RSS (MiB), open fds and threads of a process, from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return (
        round(3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 2) if var else None
    )


def soak(args: argparse.Namespace, custom: client.CustomObjectsApi, tracker: Tracker, pid: int) -> dict:
    departments = [f"dept-{i:02d}" for i in range(args.departments)]
    churned: deque[tuple[str, str]] = deque()
    standing = [(departments[i % len(departments)], f"base-{i}") for i in range(args.base)]
    serial = itertools.count()
    ops = itertools.cycle(["create", "update", "delete"])
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    next_sample, next_op, errors = started, started, 0
    window: list[tuple[str, float]] = []
    while (now := time.monotonic()) < started + 60 * args.minutes:
        if now >= next_sample:
            window += tracker.take()
            samples.append(_sample(now - started, pid, window, len(tracker.pending), errors))
            print(json.dumps(samples[-1]), flush=True)
            window, next_sample = [], next_sample + args.sample
        op = next(ops)
        try:
            if op == "create":
                ns, name = departments[next(serial) % len(departments)], f"churn-{next(serial)}"
                tracker.expect(f"{ns}/{name}", "create", time.monotonic(), 1)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, testing.channel(ns, name))
                churned.append((ns, name))
            elif op == "update":
                ns, name = standing[next(serial) % len(standing)]
                age = f"{1 + next(serial) % 23}h"
                patch = {"spec": {"limits": {"maxAge": age}}}
                t = time.monotonic()
                obj = custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)
                tracker.expect(f"{ns}/{name}", "update", t, int(obj["metadata"]["generation"]))
            elif len(churned) > args.keep:
                ns, name = churned.popleft()
                tracker.expect(f"{ns}/{name}", "delete", time.monotonic())
                custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except client.ApiException as e:
            errors += 1
            print(f"  ({op} failed: {e.status} {e.reason})", file=sys.stderr)
        next_op += 1 / args.rate
        time.sleep(max(0.0, next_op - time.monotonic()))
    samples.append(
        _sample(time.monotonic() - started, pid, window + tracker.take(), len(tracker.pending), errors)
    )
    after = [s for s in samples if s["t_s"] >= 60 * args.warmup]
    return {
        "samples": samples,
        "rss_slope_mib_per_hour": slope_per_hour([(s["t_s"], s["rss_mib"]) for s in after]),
        "fds_slope_per_hour": slope_per_hour([(s["t_s"], s["fds"]) for s in after]),
        "unfinished": len(tracker.pending),
    }


def _sample(t: float, pid: int, done: list[tuple[str, float]], pending: int, errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"t_s": round(t), **proc_sample(pid), "pending": pending, "errors": errors}
    for op in ("create", "update", "delete"):
        lat = [s for o, s in done if o == op]
        out[f"{op}s"] = len(lat)
        out[f"{op}_p50_s"] = round(pct(lat, 50), 2) if lat else None
        out[f"{op}_p99_s"] = round(pct(lat, 99), 2) if lat else None
    out["load1"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--base", type=int, default=1000, help="standing requests created first")
    parser.add_argument("--departments", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, default=2.0, help="operations per second (create/update/delete)"
    )
    parser.add_argument("--keep", type=int, default=100, help="churned requests alive before deletes start")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the slopes")
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cityhub-soak-"))
    started = cluster_for(work, args.kubeconfig)
    if started is None:
        return 1
    kubeconfig, stop_cluster = started
    nats, operator, port = messaging_operator(work, kubeconfig)
    tracker: Tracker | None = None
    try:
        departments = serve(kubeconfig, operator, port, args.departments)
        api = testing.api(kubeconfig)
        tracker = Tracker(api)
        tracker.start()
        docs = [testing.channel(departments[i % len(departments)], f"base-{i}") for i in range(args.base)]
        for i in range(0, len(docs), 500):
            testing.apply(kubeconfig, docs[i : i + 500])
        custom = client.CustomObjectsApi(api)
        testing.wait_for(
            lambda: sum(_ready(o) for o in testing.list_requests(api)) >= args.base, 1800, "base Ready", 2
        )
        print(f"{args.base} standing requests Ready; soaking {args.minutes:g} min at {args.rate:g} ops/s")
        results = soak(args, custom, tracker, operator.pid)
        results["settings"] = {k: str(v) for k, v in vars(args).items()}
        results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    finally:
        if tracker is not None:
            tracker.stopped = True
        operator.stop()
        nats.stop()
        stop_cluster()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    _report(results)
    return 0


def _ready(obj: dict[str, Any]) -> bool:
    return testing.condition(obj, "Ready").get("status") == "True"


def _report(results: dict[str, Any]) -> None:
    print("\n   t s  RSS MiB  fds  thr  creates p50/p99 s  updates p50/p99 s  deletes p50/p99 s  pend  load")
    for s in results["samples"]:
        cols = [
            f"{s[op + 's']:>3} {s[op + '_p50_s']}/{s[op + '_p99_s']}" for op in ("create", "update", "delete")
        ]
        print(
            f"{s['t_s']:>6}  {s['rss_mib']:>7}  {s['fds']:>3}  {s['threads']:>3}  {cols[0]:>17}  "
            f"{cols[1]:>17}  {cols[2]:>17}  {s['pending']:>4}  {s['load1']:>4}"
        )
    print(
        f"RSS slope after warm-up: {results['rss_slope_mib_per_hour']} MiB/h; "
        f"fds slope: {results['fds_slope_per_hour']} /h; unfinished at the end: {results['unfinished']}"
    )


if __name__ == "__main__":
    sys.exit(main())
