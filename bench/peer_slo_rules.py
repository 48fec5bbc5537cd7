"""The two rule sets bench/peer_slo.py compares, for one SLO: probe availability per department x component
type x offering (cityhub_probe_total, objective api.PROBE_OBJECTIVE over 30d).

- cityhub: the SLO's rules taken from components/monitoring_rules.py's generator (nothing hand-copied): the
  recording rules cityhub:probe_errors:ratio_rate<w> and cityhub:probe_error_budget:remaining, and the three
  CityhubProbeBudgetBurn* alerts. The file's other SLO (provisioning) and the hub alerts are left out.
- Sloth: the same SLI written as a Sloth prometheus/v1 spec (SPEC below), rules made by `sloth generate`
  (the pinned binary of hack/peers/sloth.sh).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths
from cityhub_api import api
from components import monitoring_rules
from components.monitoring_rules import BY, RuleParams

SLOTH_ALERT = "CityhubProbeAvailability"
SPEC = f"""\
version: "prometheus/v1"
service: "cityhub"
slos:
  - name: "probe-availability"
    objective: {api.PROBE_OBJECTIVE * 100:g}
    description: "Share of black-box probes that succeed, per department x component type x offering."
    sli:
      events:
        error_query: sum by ({BY}) (rate(cityhub_probe_total{{result="failure"}}[{{{{.window}}}}]))
        total_query: sum by ({BY}) (rate(cityhub_probe_total[{{{{.window}}}}]))
    alerting:
      name: {SLOTH_ALERT}
      page_alert:
        labels: {{severity: page}}
      ticket_alert:
        labels: {{severity: ticket}}
"""
"""The Sloth spec of cityhub's probe availability SLO: same counter, same grouping, same objective and
period (Sloth's default 30d), Sloth's default page/ticket multiwindow alerts."""


def sloth_binary() -> Path:
    binary = paths.bin_dir() / "sloth"
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run hack/peers/sloth.sh")
    return binary


def cityhub_groups(interval: str, long_interval: str) -> list[dict[str, Any]]:
    """cityhub's groups for the probe SLO only, from the generator (same names, same expressions, and the
    windows of a day or more in their own group at long_interval)."""
    params = RuleParams(interval=interval, long_interval=long_interval)
    keep: list[dict[str, Any]] = []
    for group in monitoring_rules.groups(params):
        rules = [
            r
            for r in group["rules"]
            if r.get("record", "").startswith(("cityhub:probe_errors:", "cityhub:probe_error_budget:"))
            or r.get("alert", "").startswith("CityhubProbeBudgetBurn")
        ]
        keep.append({**group, "rules": rules})
    return keep


def sloth_groups(directory: Path) -> list[dict[str, Any]]:
    """`sloth generate` on SPEC; the groups of its output (they have no interval: the global one applies)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec, out = directory / "sloth-spec.yaml", directory / "sloth.rules.yaml"
    spec.write_text(SPEC)
    run = subprocess.run(
        [str(sloth_binary()), "generate", "--no-log", "-i", str(spec), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"sloth generate failed: {run.stdout}{run.stderr}")
    return list(yaml.safe_load(out.read_text())["groups"])


def sloth_version() -> str:
    run = subprocess.run([str(sloth_binary()), "version"], capture_output=True, text=True, timeout=30)
    return run.stdout.strip()


def rules_text(groups: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000, allow_unicode=True)


def count(groups: list[dict[str, Any]]) -> dict[str, int]:
    records = sum(1 for g in groups for r in g["rules"] if "record" in r)
    alerts = sum(1 for g in groups for r in g["rules"] if "alert" in r)
    return {"groups": len(groups), "rules": records + alerts, "recording": records, "alerting": alerts}


def recorded_names(groups: list[dict[str, Any]]) -> list[str]:
    """Metric names the recording rules write (a name recorded once per window counts once per rule)."""
    return [r["record"] for g in groups for r in g["rules"] if "record" in r]


def alert_names(groups: list[dict[str, Any]]) -> list[str]:
    return sorted({r["alert"] for g in groups for r in g["rules"] if "alert" in r})
