"""The live half of bench/peer_slo.py: one real Prometheus (hack/prometheus.sh) evaluating both rule sets at
the same interval over the same probe counters, with HISTORY of backfilled history, so the long windows
(3d, 30d) read what they would read in production. Measured per rule group: prometheus_rule_group_last_
duration_seconds of every cycle (read from Prometheus's own /metrics), samples written per cycle, and the
series the rules leave in the TSDB (NaN ones counted).

Data: `groups` department x component type pairs, 1000 probes a minute, 0.1 % failing; every IDLE_EVERY-th
pair has had zero traffic for the last IDLE_HOURS hours (its counters are still exported, flat).
  1. history: one OpenMetrics file per 2h block → `promtool tsdb create-blocks-from openmetrics` (2.42
     re-reads the whole input for every 2h block it writes, so one small file per block keeps it linear);
  2. a first Prometheus serves that history; `promtool tsdb create-blocks-from rules` backfills Sloth's
     slo:sli_error:ratio_rate5m over it (the one recorded series a rule reads back over a range: Sloth's 30d
     ratio is sum_over_time of it; cityhub's rules read only raw counters);
  3. the measured Prometheus starts on that TSDB with both rule files and scrapes an in-process exporter
     that continues the same counters.
"""

from __future__ import annotations

import http.server
import json
import math
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths, supervisor
from cityhub.local_prometheus import Prometheus

RATE = 1000 / 60
"""Probes per second per pair."""
FAIL = 0.001
IDLE_EVERY = 10
IDLE_HOURS = 6
STEP = 60
"""History resolution (seconds): a 1m scrape interval."""
TYPES = ("messaging", "identity", "maps", "inference")
BLOCK = 2 * 3600


@dataclass(frozen=True)
class Pair:
    department: str
    ctype: str
    idle_from: float | None

    def counts(self, t: float, t0: float) -> tuple[float, float]:
        """(success, failure) counter values at unix time t."""
        end = min(t, self.idle_from) if self.idle_from is not None else t
        total = math.floor(RATE * max(0.0, end - t0))
        failed = math.floor(total * FAIL)
        return total - failed, failed

    def labels(self, result: str) -> str:
        return (
            f'department="{self.department}",component_type="{self.ctype}",offering="{self.ctype}",'
            f'result="{result}"'
        )


def pairs(count: int, now: float) -> list[Pair]:
    types = TYPES[: max(1, min(len(TYPES), count // 5 or 1))]
    out = []
    for i in range(count):
        idle = now - IDLE_HOURS * 3600 if i % IDLE_EVERY == IDLE_EVERY - 1 else None
        out.append(Pair(f"dept-{i // len(types):02d}", types[i % len(types)], idle))
    return out


def backfill_raw(data: Path, work: Path, series: list[Pair], t0: float, end: float) -> int:
    """History [t0, end] into `data` as 2h blocks; returns the number of samples written."""
    samples = 0
    start = int(t0 // BLOCK * BLOCK)
    for block_start in range(start, int(end), BLOCK):
        times = [t for t in range(max(block_start, int(t0)), min(block_start + BLOCK, int(end) + 1), STEP)]
        if not times:
            continue
        lines = ["# TYPE cityhub_probe counter"]
        for p in series:
            for result, index in (("success", 0), ("failure", 1)):
                name = f"cityhub_probe_total{{{p.labels(result)}}}"
                lines += [f"{name} {p.counts(t, t0)[index]} {t}" for t in times]
        lines.append("# EOF\n")
        samples += len(lines) - 2
        path = work / "block.om"
        path.write_text("\n".join(lines))
        _promtool("tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(data))
    return samples


def _promtool(*args: str) -> str:
    """Run promtool; its output (it logs query errors there and still exits 0)."""
    run = subprocess.run([str(paths.tool("promtool")), *args], capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(f"promtool {' '.join(args[:3])} failed: {run.stdout[-1500:]}{run.stderr[-1500:]}")
    return run.stdout + run.stderr


def blocks_from_rules(url: str, t0: float, end: float, blocks: Path, rule_file: Path, tries: int = 3) -> None:
    """Record `rule_file`'s rules over [t0, end] into `blocks` from the Prometheus at `url`. promtool exits 0
    having written nothing when its range queries fail (seen on a loaded machine, from a fresh clone): try
    again, then say what it logged."""
    logged = ""
    for attempt in range(tries):
        logged = _promtool(
            "tsdb", "create-blocks-from", "rules", "-q", f"--url={url}", f"--start={int(t0)}",
            f"--end={int(end)}", f"--output-dir={blocks}", "--eval-interval=60s", str(rule_file),
        )
        if blocks.is_dir() and any(blocks.iterdir()):
            return
        time.sleep(5.0 * (attempt + 1))
    raise RuntimeError(f"promtool wrote no blocks from {rule_file.name} in {tries} tries: {logged[-1500:]}")


class _Exporter(http.server.BaseHTTPRequestHandler):
    series: tuple[Pair, ...] = ()
    t0 = 0.0

    def do_GET(self) -> None:
        now = time.time()
        lines = ["# TYPE cityhub_probe_total counter"]
        for p in self.series:
            ok, failed = p.counts(now, self.t0)
            lines += [f"cityhub_probe_total{{{p.labels('success')}}} {ok}"]
            lines += [f"cityhub_probe_total{{{p.labels('failure')}}} {failed}"]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def serve(series: list[Pair], t0: float) -> http.server.ThreadingHTTPServer:
    handler = type("Exporter", (_Exporter,), {"series": tuple(series), "t0": t0})
    server = http.server.ThreadingHTTPServer((supervisor.HOST, supervisor.free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def own_metrics(url: str) -> dict[str, dict[str, float]]:
    """Prometheus's rule-group metrics from its /metrics: metric → rule group name → value."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, dict[str, float]] = {}
    pattern = r'^(prometheus_rule_group_[a-z_]+)\{rule_group="[^;"]*;([^"]+)"\} (\S+)$'
    for m in re.finditer(pattern, text, re.M):
        out.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return out


def measure_cycles(prom: Prometheus, cycles: dict[str, int], timeout: float) -> dict[str, list[float]]:
    """Each group's last_duration_seconds of its number of distinct evaluations (told apart by their
    timestamp): a group at a longer interval is measured over fewer cycles in the same time."""
    groups = list(cycles)
    seen: dict[str, dict[float, float]] = {g: {} for g in groups}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(len(seen[g]) < cycles[g] for g in groups):
        metrics = own_metrics(prom.url)
        stamps = metrics.get("prometheus_rule_group_last_evaluation_timestamp_seconds", {})
        durations = metrics.get("prometheus_rule_group_last_duration_seconds", {})
        for g in groups:
            if stamps.get(g, 0) > 0 and g in durations:
                seen[g][stamps[g]] = durations[g]
        time.sleep(0.5)
    return {g: [v for _, v in sorted(s.items())] for g, s in seen.items()}


def own_value(url: str, name: str) -> float:
    """One unlabelled metric of Prometheus's own /metrics (it does not scrape itself here)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def settle(prom: Prometheus, quiet: float, timeout: float) -> int:
    """Wait until the TSDB has compacted the backfilled blocks (none for `quiet` s), so compaction does not
    run during the measured cycles; returns the blocks loaded."""
    last, since, deadline = -1.0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = own_value(prom.url, "prometheus_tsdb_compactions_total")
        if done != last:
            last, since = done, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(2)
    return int(own_value(prom.url, "prometheus_tsdb_blocks_loaded"))


def rule_times(prom: Prometheus) -> dict[str, float]:
    """Each rule's evaluation time in its group's last cycle (/api/v1/rules): where a cycle's time goes."""
    times: dict[str, float] = {}
    for group in prom._get("/api/v1/rules")["groups"]:
        for i, rule in enumerate(group["rules"]):  # Sloth's page and ticket alerts share a name
            times[f"{group['name']}/{i}:{rule['name']}"] = float(rule.get("evaluationTime", 0.0))
    return times


def tsdb_series(prom: Prometheus, pattern: str) -> dict[str, int]:
    """Series per recorded name matching `pattern`, and how many of them hold NaN now."""
    result = prom.query(f'{{__name__=~"{pattern}"}}')
    names: dict[str, int] = {}
    nan = 0
    for sample in result:
        names[sample["metric"]["__name__"]] = names.get(sample["metric"]["__name__"], 0) + 1
        nan += sample["value"][1] == "NaN"
    return {"series": len(result), "nan_series": nan, "names": len(names)}


def write_config(directory: Path, rule_files: list[str], interval: str) -> None:
    """Point the Prometheus class's config at several rule files (it writes one)."""
    config = yaml.safe_load((directory / "prometheus.yml").read_text())
    config["rule_files"] = rule_files
    config["global"]["evaluation_interval"] = interval
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))
