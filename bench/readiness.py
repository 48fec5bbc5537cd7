"""What the operator benchmarks share: a watch that timestamps requests appearing and becoming Ready, the
operator's own metrics, and percentiles. Imported by bench/bench_*.py (run as scripts from the checkout)."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, watch

from cityhub import testkit as testing
from cityhub_api.api import GROUP, VERSION


def cluster_for(work: Path, given: Path | None) -> tuple[Path, Callable[[], None]] | None:
    """The kubeconfig to bench against and what stops the cluster afterwards: `given` (left running), or a
    new embedded cluster in work/state. None when the embedded cluster fails to start (it printed why)."""
    if given is not None:
        return given, lambda: None
    from cityhub import embedded_cluster

    os.environ["CITYHUB_STATE"] = str(work / "state")
    if embedded_cluster.main(["up"]) != 0:
        return None
    return work / "state" / "cluster" / "kubeconfig", lambda: embedded_cluster.main(["down"])


class Watcher(threading.Thread):
    """Watches one request kind cluster-wide: when each request was first seen, and when it became Ready."""

    def __init__(self, api: client.ApiClient, plural: str) -> None:
        super().__init__(daemon=True)
        self.api, self.plural = api, plural
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopped = False

    def run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self.stopped:
            try:
                for ev in watch.Watch().stream(
                    custom.list_cluster_custom_object, GROUP, VERSION, self.plural, timeout_seconds=30
                ):
                    now, obj = time.monotonic(), ev["object"]
                    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
                    with self.lock:
                        self.seen.setdefault(key, now)
                        if testing.condition(obj, "Ready").get("status") == "True":
                            self.ready.setdefault(key, now)
                    if self.stopped:
                        break
            except Exception as e:  # a dropped watch is restarted; the bench must not die of it
                print(f"  (watch restarted: {type(e).__name__})", file=sys.stderr)

    def count_ready(self, keys: list[str]) -> int:
        with self.lock:
            return sum(k in self.ready for k in keys)


def metrics(port: int) -> dict[str, float]:
    """The operator's cityhub_* samples from its /metrics endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cityhub_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def metrics_up(port: int) -> bool:
    """Whether the operator's /metrics endpoint answers (it starts with the operator's startup handler)."""
    try:
        metrics(port)
        return True
    except OSError:
        return False


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]
