"""What bench/peer_nack.py reads off the processes it compares: a controller's CPU seconds and peak resident
memory (Linux /proc), the API server's write counters (apiserver_request_total) and nats-server's own
counters (JetStream API calls, messages received), plus a request watch for any API group.

Every counter is read before and after a batch; the bench reports the differences.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import nats
from kubernetes import client, watch
from readiness import Watcher

from cityhub import testkit as testing

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
"""The verbs of apiserver_request_total that change something (APPLY: server-side apply, the bench's own)."""
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = round(int(value.split()[0]) / 1024, 1)
    return out


def api_writes(kubeconfig: Path) -> dict[str, float]:
    """The API server's write requests so far, by `VERB resource[/subresource]` (leases left out: they are
    the control plane's own heartbeats, not either controller's work)."""
    text = testing.kubectl(kubeconfig, "get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m["labels"]))
        if labels.get("verb") not in WRITES or labels.get("resource") == "leases":
            continue
        key = f"{labels['verb']} {labels.get('resource', '')}"
        if labels.get("subresource"):
            key += f"/{labels['subresource']}"
        out[key] = out.get(key, 0.0) + float(m["value"])
    return out


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    keys = sorted(set(after) | set(before))
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in keys if after.get(k, 0) != before.get(k, 0)}


async def _nats_counters(url: str, creds: Path) -> dict[str, int]:
    nc = await nats.connect(url, user_credentials=str(creds), connect_timeout=10, allow_reconnect=False)
    try:
        statz = json.loads((await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=10)).data)
        jsz = json.loads((await nc.request("$SYS.REQ.SERVER.PING.JSZ", b"", timeout=10)).data)
    finally:
        await nc.close()
    stats, js = statz.get("statsz", {}), jsz.get("data", {})
    return {
        "messages_in": int(stats.get("received", {}).get("msgs", 0)),
        "jetstream_api": int(js.get("api", {}).get("total", 0)),
        "jetstream_api_errors": int(js.get("api", {}).get("errors", 0)),
        "streams": int(js.get("streams", 0)),
    }


def nats_counters(url: str, system_creds: Path) -> dict[str, int]:
    """nats-server's messages received from clients, JetStream API requests (and errors) and streams, read
    through the system account. The two requests that read them add 2 to messages_in."""
    return asyncio.run(_nats_counters(url, system_creds))


class GroupWatcher(Watcher):
    """readiness.Watcher for a request kind of any API group (readiness.Watcher watches cityhub's own)."""

    def __init__(self, api: client.ApiClient, group: str, version: str, plural: str) -> None:
        super().__init__(api, plural)
        self.group, self.version = group, version

    def run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self.stopped:
            try:
                for ev in watch.Watch().stream(
                    custom.list_cluster_custom_object,
                    self.group,
                    self.version,
                    self.plural,
                    timeout_seconds=30,
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

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"seen": len(self.seen), "ready": len(self.ready)}
