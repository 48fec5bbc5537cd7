"""The scripted scenario of bench/peer_slo.py: the same synthetic probe counters for both rule sets, evaluated
together by Prometheus's own rule engine (`promtool test rules`, evaluation every minute, one run), read back
every CHECK_EVERY minutes: which alerts fire when, and what the SLO series hold during zero traffic.

Four departments (component type and offering `messaging`), 1000 probes a minute each, 0.1 % failing
(0.2x the 0.5 % budget) unless said otherwise:
    yingji    the scripted burn: 20 % failing for 30 min at 48h (40x: fast page), 4 % for 10h at 60h (8x:
              slow page and ticket)
    jiaotong  healthy; a 3-minute total outage at 80h (a blip: 1h burn 5 %, nothing may fire)
    huanbao   zero traffic from 24h to 36h (counters exported but flat), then healthy again
    minzheng  never fails and has no failure series (cityhub's operator creates both children at zero;
              an exporter that creates a child on first use does not)
The full timeline (FULL) runs 4 days; --quick (QUICK) 8 hours with the idle period and the fast burn only.
Each check asks promtool for "no alerts" / "no samples": its failure report lists what there was, which is
parsed back (promtool prints every firing alert's labels and every sample's value).
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths

HOUR = 60
CHECK_EVERY = 5
"""Alerts are checked every minute from 10 min before to 1h after each burn's start and end, else every
CHECK_EVERY minutes."""
RATE = 1000
"""Probes per minute per department."""
LABELS = 'component_type="messaging", offering="messaging"'


@dataclass(frozen=True)
class Timeline:
    length: int
    """Minutes (the full one is 4 days: the longest burn window is 3d)."""
    idle: tuple[int, int]
    """huanbao's zero-traffic period (minutes)."""
    burns: dict[str, tuple[int, int, int]]
    """yingji's scripted burns: name → (start minute, end minute, failures per minute)."""
    blip: tuple[int, int] | None

    @property
    def zero_traffic_checks(self) -> tuple[int, int]:
        """Checked for NaN/absent: from 10 min into the idle period (every window but 5m still sees the
        traffic before it until then) to its end."""
        return self.idle[0] + 10, self.idle[1]

    def expected(self) -> dict[str, list[tuple[int, int]]]:
        """Where each severity must fire (yingji only): during these burns (detection delay and reset are
        measured); anywhere else, and for any other department, a firing alert is a false positive."""
        fast, slow = self.burns.get("fast"), self.burns.get("slow")
        # Without a slow burn (--quick: 8 hours of data) the 3d window holds little but the fast burn, so the
        # ticket (3d and 6h over 1x) rightly fires for it too.
        ticket = slow or fast
        return {"page": [b[:2] for b in (fast, slow) if b], "ticket": [ticket[:2]] if ticket else []}


FULL = Timeline(
    length=96 * HOUR,
    idle=(24 * HOUR, 36 * HOUR),
    burns={"fast": (48 * HOUR, 48 * HOUR + 30, 200), "slow": (60 * HOUR, 70 * HOUR, 40)},
    blip=(80 * HOUR, 80 * HOUR + 3),
)
QUICK = Timeline(length=8 * HOUR, idle=(2 * HOUR, 4 * HOUR), burns={"fast": (6 * HOUR, 6 * HOUR + 30, 200)},
                 blip=None)  # fmt: skip
"""--quick: the zero-traffic period and the fast burn only, in 8 hours."""


def failures_per_minute(tl: Timeline, department: str, minute: int) -> tuple[int, int]:
    """(probes, failures) in the minute ending at `minute`."""
    if department == "huanbao" and tl.idle[0] < minute <= tl.idle[1]:
        return 0, 0
    if department == "minzheng":
        return RATE, 0
    if department == "jiaotong" and tl.blip and tl.blip[0] < minute <= tl.blip[1]:
        return RATE, RATE
    if department == "yingji":
        for start, end, failing in tl.burns.values():
            if start < minute <= end:
                return RATE, failing
    return RATE, 1


def _expanding(increments: list[int]) -> str:
    """promtool's expanding notation for a counter starting at 0 with these per-minute increments:
    runs of equal steps as 'start+step x n' (n+1 points)."""
    values = [0]
    for inc in increments:
        values.append(values[-1] + inc)
    parts: list[str] = []
    i = 0
    while i < len(values):
        if i == len(values) - 1:
            parts.append(str(values[i]))
            break
        step, j = values[i + 1] - values[i], i + 1
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        parts.append(f"{values[i]}+{step}x{j - i}")
        i = j + 1
    return " ".join(parts)


def input_series(tl: Timeline) -> list[dict[str, str]]:
    series = []
    for dept in ("yingji", "jiaotong", "huanbao", "minzheng"):
        counts = [failures_per_minute(tl, dept, m) for m in range(1, tl.length + 1)]
        ok = [probes - failed for probes, failed in counts]
        series.append(_series(dept, "success", ok))
        if dept != "minzheng":
            series.append(_series(dept, "failure", [failed for _, failed in counts]))
    return series


def _series(dept: str, result: str, increments: list[int]) -> dict[str, str]:
    return {
        "series": f'cityhub_probe_total{{department="{dept}", {LABELS}, result="{result}"}}',
        "values": _expanding(increments),
    }


def check_minutes(tl: Timeline) -> list[int]:
    length = tl.length
    fine = {
        m
        for start, end, _ in tl.burns.values()
        for edge in (start, end)
        for m in range(edge - 10, edge + HOUR + 1)
    }
    return sorted(m for m in fine | set(range(CHECK_EVERY, length + 1, CHECK_EVERY)) if 0 < m <= length)


def test_file(
    rule_files: Iterable[str],
    alerts: Iterable[str],
    records: Iterable[str],
    tl: Timeline,
    group_order: list[str],
) -> dict[str, Any]:
    """At every check minute: 'no alert' for every alert name; over the zero-traffic period and at the end,
    'no samples' for every SLO series of huanbao and minzheng. `group_order`: recording groups before the
    alert groups that read them (without it promtool 2.42 orders groups at random from one run to the next,
    so an alert reads either this minute's ratios or the last minute's)."""
    names = "|".join(re.escape(r) for r in sorted(set(records)))
    checks_alerts = [
        {"eval_time": f"{m}m", "alertname": a, "exp_alerts": []} for m in check_minutes(tl) for a in alerts
    ]
    first, last = tl.zero_traffic_checks
    times = [*range(first, last + 1, CHECK_EVERY), tl.length]
    checks_exprs = [
        {
            "expr": f'{{__name__=~"{names}", department=~"huanbao|minzheng"}}',
            "eval_time": f"{m}m",
            "exp_samples": [],
        }
        for m in times
    ]
    return {
        "rule_files": list(rule_files),
        "evaluation_interval": "1m",
        "group_eval_order": group_order,
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(tl),
                "alert_rule_test": checks_alerts,
                "promql_expr_test": checks_exprs,
            }
        ],
    }


_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_MINUTES = {"y": 525600, "w": 10080, "d": 1440, "h": 60, "m": 1, "s": 1 / 60, "ms": 1 / 60000}


def minutes(duration: str) -> float:
    return sum(int(n) * _MINUTES[u] for n, u in _DURATION.findall(duration))


def _labels(text: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


@dataclass
class Outcome:
    firing: dict[tuple[str, str, str], list[float]]
    """(alert name, severity, department) → the check minutes where it was firing."""
    samples: dict[float, list[tuple[dict[str, str], float]]]
    """Check minute → the SLO series of huanbao and minzheng (labels, value) at that minute."""
    seconds: float


def run(directory: Path, test: dict[str, Any]) -> Outcome:
    """promtool test rules on `test` (rule files relative to `directory`); parses what it reports."""

    path = directory / "scenario.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=100000))
    started = time.perf_counter()
    done = subprocess.run(
        [str(paths.tool("promtool")), "test", "rules", path.name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    out = done.stdout + done.stderr  # promtool reports failed checks on stderr
    (directory / "promtool-test.out").write_text(out)
    if "FAILED" not in out and done.returncode != 0:
        raise RuntimeError(f"promtool test rules failed to run: {out[-3000:]}")
    return parse(out, seconds)


def parse(out: str, seconds: float = 0.0) -> Outcome:
    firing: dict[tuple[str, str, str], list[float]] = {}
    samples: dict[float, list[tuple[dict[str, str], float]]] = {}
    alert, at, expr_at = "", 0.0, None
    for line in out.splitlines():
        s = line.strip()
        if m := re.match(r"alertname: (\S+), time: (\S+),", s):
            alert, at, expr_at = m.group(1), minutes(m.group(2)), None
        elif m := re.match(r'expr: ".*", time: (\S+),', s):
            expr_at = minutes(m.group(1))
            samples.setdefault(expr_at, [])
        elif s.startswith("Labels:{") and expr_at is None:
            labels = _labels(s)
            key = (alert, labels.get("severity", ""), labels.get("department", ""))
            firing.setdefault(key, []).append(at)
        elif expr_at is not None and s.startswith("got: {"):
            for labels, value in re.findall(r"(\{[^}]*\}) ([^,\s]+)", s):
                samples[expr_at].append((_labels(labels), float(value)))
    return Outcome(firing, samples, seconds)


def runs(checked: list[float]) -> list[tuple[float, float]]:
    """Contiguous firing periods [first check, last check] from the sorted check minutes."""
    periods: list[tuple[float, float]] = []
    for m in sorted(checked):
        if periods and m - periods[-1][1] <= CHECK_EVERY:
            periods[-1] = (periods[-1][0], m)
        else:
            periods.append((m, m))
    return periods


def zero_traffic(outcome: Outcome, records: list[str], tl: Timeline) -> dict[str, Any]:
    """During huanbao's idle period: per recorded name, how many checks held NaN, a number, or nothing."""
    first, last = tl.zero_traffic_checks
    times = [t for t in outcome.samples if first <= t <= last]
    per_name: dict[str, dict[str, int]] = {}
    for name in records:
        tally = {"nan": 0, "number": 0, "absent": 0}
        for t in times:
            values = [
                v
                for labels, v in outcome.samples[t]
                if labels.get("__name__") == name and labels.get("department") == "huanbao"
            ]
            if not values:
                tally["absent"] += 1
            else:
                tally["nan" if any(math.isnan(v) for v in values) else "number"] += 1
        per_name[name] = tally
    return {"checks": len(times), "per_name": per_name}


def values_at(outcome: Outcome, minute: float, department: str) -> dict[str, float]:
    """name (+ sloth_window) → value of `department`'s SLO series at the check `minute`."""
    return {
        labels["__name__"] + (f"[{labels['sloth_window']}]" if "sloth_window" in labels else ""): value
        for labels, value in outcome.samples.get(minute, [])
        if labels.get("department") == department
    }


def alert_summary(outcome: Outcome, alerts: Iterable[str], tl: Timeline) -> dict[str, Any]:
    """For one side's alert names: per severity, each expected burn's detection delay (first firing check
    minus the burn's start) and reset (last firing check minus its end), and the firing checks that no
    burn explains (other departments, or outside a burn and the 6h after it)."""
    names = set(alerts)
    summary: dict[str, Any] = {}
    for severity, burns in tl.expected().items():
        checks = sorted(
            {
                m
                for (name, sev, dept), ms in outcome.firing.items()
                if name in names and sev == severity and dept == "yingji"
                for m in ms
            }
        )
        others = sum(
            len(ms)
            for (name, sev, dept), ms in outcome.firing.items()
            if name in names and sev == severity and dept != "yingji"
        )
        explained: set[float] = set()
        found = []
        for start, end in burns:
            during = [m for m in checks if start < m <= end + 6 * HOUR]
            explained.update(during)
            found.append(
                {
                    "burn": (start, end),
                    "first": during[0] if during else None,
                    "last": during[-1] if during else None,
                    "detect_min": during[0] - start if during else None,
                    "reset_min": during[-1] - end if during else None,
                }
            )
        summary[severity] = {
            "burns": found,
            "false_positive_checks": others + len([m for m in checks if m not in explained]),
            "periods": [list(p) for p in runs(checks)],
        }
    return summary


def hhmm(minute: float | None) -> str:
    if minute is None:
        return "never"
    sign = "-" if minute < 0 else ""
    minute = abs(minute)
    return f"{sign}{int(minute // 60)}h{int(minute % 60):02d}"
