"""`cityhub report --period YYYY-MM`: the period's evaluation per department, as JSON and HTML files.

    cityhub report --period 2026-11 [--prometheus URL] [--stack dev] [--out DIR] [--format json,html,pdf]
                   [--prices price-sheet.yaml]

Figures come from the Prometheus that scrapes the operator (--prometheus, else CITYHUB_PROMETHEUS_URL);
department names, the city and the SLO objectives from the stack config (stacks/Pulumi.<stack>.yaml).
The PDF is the HTML page printed by headless Chromium (install it and CJK fonts with hack/browser.sh).
With --prices (the city's price sheet, schemas/price-sheet.schema.json) the report adds the cost showback
(成本分摊, cost.py); without it the report says it has none.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cityhub import browser, stack_config
from cityhub.drill.command import DrillError
from cityhub.maturity import assess
from cityhub.report import build, prices, render_html, render_json, render_pdf
from cityhub.report.model import Objectives
from cityhub.report.query import Prometheus, PrometheusError, fetch, fetch_usage
from cityhub_api.settings import Env, SettingError

FORMATS = ("json", "html", "pdf")


@dataclass(frozen=True)
class ReportSettings:
    prometheus_url: str
    """CITYHUB_PROMETHEUS_URL: the Prometheus that scrapes the operator, e.g. http://prometheus:9090."""
    timeout: float
    """CITYHUB_PROMETHEUS_TIMEOUT: seconds one query may take (default 30)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReportSettings:
        e = Env(env)
        return cls(
            prometheus_url=e.url("CITYHUB_PROMETHEUS_URL"),
            timeout=e.number("CITYHUB_PROMETHEUS_TIMEOUT", 30.0, minimum=1.0),
        )


@dataclass(frozen=True)
class StackFacts:
    """What the report takes from the stack config."""

    city: str | None
    names: dict[str, str]
    """Department slug → name (e.g. yingji → 应急管理局), in the config's order."""
    objectives: Objectives
    mode: str = "normal"
    """cityhub:mode: normal (平时) or emergency (急时), as configured (the dashboard shows it)."""


def _share(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value < 1:
        raise ValueError(
            f"Invalid cityhub:monitoring.{key}={value!r}: needs to be a share from 0.5 to 0.9999"
        )
    return float(value)


def stack_facts(stack: str) -> StackFacts:
    """The city, departments and objectives of `stack` (its tracked file, else this checkout's copy)."""
    path = stack_config.readable(stack)
    if path is None:
        raise ValueError(f"Invalid --stack {stack}: no stacks/Pulumi.{stack}.yaml (names the departments)")
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    names = {
        str(d["slug"]): str(d.get("name") or d["slug"])
        for d in config.get("cityhub:departments") or []
        if isinstance(d, dict) and d.get("slug")
    }
    monitoring = config.get("cityhub:monitoring") or {}
    defaults = Objectives()
    threshold = monitoring.get("provisioningThresholdSeconds", defaults.provisioning_threshold_seconds)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        raise ValueError(
            f"Invalid cityhub:monitoring.provisioningThresholdSeconds={threshold!r}: needs to be seconds"
        )
    objectives = Objectives(
        probe_objective=_share(monitoring, "probeObjective", defaults.probe_objective),
        provisioning_objective=_share(monitoring, "provisioningObjective", defaults.provisioning_objective),
        provisioning_threshold_seconds=float(threshold),
    )
    city = config.get("cityhub:city")
    mode = str(config.get("cityhub:mode") or "normal")
    return StackFacts(city=str(city) if city else None, names=names, objectives=objectives, mode=mode)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cityhub report",
        description="运营评价 / the operations evaluation of a period, per department and component type",
    )
    p.add_argument("--period", required=True, help="a month, YYYY-MM (China Standard Time), e.g. 2026-11")
    p.add_argument("--prometheus", help="Prometheus URL (default: CITYHUB_PROMETHEUS_URL)")
    p.add_argument(
        "--stack", default="dev", help="stack whose departments and objectives to use (default dev)"
    )
    p.add_argument("--out", type=Path, default=Path("."), help="directory for the files (default: here)")
    p.add_argument(
        "--format", default="json,html", help="comma-separated: json, html, pdf (default json,html)"
    )
    p.add_argument(
        "--prices",
        type=Path,
        help="the city's price sheet (YAML, docs/report.md): adds the cost showback 成本分摊 (default: none)",
    )
    return p


def main(argv: list[str]) -> int:
    ns = parser().parse_args(argv)
    try:
        formats = tuple(f.strip() for f in ns.format.split(",") if f.strip())
        if not formats or set(formats) - set(FORMATS):
            raise ValueError(
                f"Invalid --format {ns.format}: needs to be json, html and/or pdf, e.g. json,pdf"
            )
        if "pdf" in formats:
            browser.require()  # before querying Prometheus: say what to install first
        sheet = prices.load(ns.prices) if ns.prices else None  # a wrong price is told before any query
        settings = ReportSettings.from_env()
        url = (ns.prometheus or settings.prometheus_url).rstrip("/")
        if not url:
            raise ValueError("no Prometheus: pass --prometheus URL or set CITYHUB_PROMETHEUS_URL")
        now = datetime.now(UTC)
        period = build.period_of(ns.period, now)
        facts = stack_facts(ns.stack)
        prometheus = Prometheus(url, settings.timeout)
        results = fetch(prometheus, period)
        usage = fetch_usage(prometheus, period) if sheet else None
        report = build.assemble(
            results,
            period,
            facts.objectives,
            facts.names,
            city=facts.city,
            source=url,
            now=now,
            usage=usage,
            prices=sheet,
        )
    except (ValueError, SettingError, PrometheusError, browser.BrowserMissing) as e:
        print(f"cityhub report: {e}", file=sys.stderr)
        return 1
    try:  # 成熟度 needs the cluster too; a report from Prometheus alone leaves the section out
        report = dataclasses.replace(report, maturity=assess(ns.stack, figures=report.figures, now=now))
    except (DrillError, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"cityhub report: no maturity section, the cluster could not be read: {e}", file=sys.stderr)
    ns.out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = ns.out / f"cityhub-report-{period.label}.{fmt}"
        if fmt == "pdf":
            render_pdf.write(report, path)
        else:
            text = render_json.dumps(report) if fmt == "json" else render_html.render(report)
            path.write_text(text, encoding="utf-8")
        written.append(path)
    with_data = sum(1 for d in report.departments if d.figures.has_data)
    print(
        f"{report.city or 'cityhub'} {period.label}: {with_data}/{len(report.departments)} departments with "
        f"data, {len(report.findings)} item(s) need attention"
    )
    if report.cost is not None:
        print(f"cost showback: {report.cost.total:,.2f} {report.cost.currency} for the city")
    for path in written:
        print(f"wrote {path}")
    return 0
