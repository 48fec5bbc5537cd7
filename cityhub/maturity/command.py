"""`cityhub maturity [--stack dev] [--prometheus URL] [--format text|json]`: 成熟度 from the live hub.

The cluster is the stack's (the embedded one, or $KUBECONFIG); figures for problem resolution and
satisfaction come from --prometheus (else CITYHUB_PROMETHEUS_URL; without either that dimension is not
measured).
"""

from __future__ import annotations

import argparse
import json
import sys

from cityhub.drill.command import DrillError
from cityhub.maturity.live import assess
from cityhub.maturity.render import text, to_dict
from cityhub.report.command import ReportSettings
from cityhub.report.query import Prometheus, PrometheusError
from cityhub_api.settings import SettingError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityhub maturity", description="成熟度 / maturity self-assessment")
    p.add_argument("--stack", default="dev", help="stack whose hub to assess (default dev)")
    p.add_argument(
        "--prometheus", help="Prometheus URL (default: CITYHUB_PROMETHEUS_URL; none: not measured)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def main(argv: list[str]) -> int:
    ns = parser().parse_args(argv)
    try:
        settings = ReportSettings.from_env()
        url = (ns.prometheus or settings.prometheus_url).rstrip("/")
        prometheus = Prometheus(url, settings.timeout) if url else None
        assessment = assess(ns.stack, prometheus=prometheus)
    except (DrillError, SettingError, PrometheusError, RuntimeError) as e:
        print(f"cityhub maturity: {e}", file=sys.stderr)
        return 1
    if ns.format == "json":
        print(json.dumps(to_dict(assessment), ensure_ascii=False, indent=2))
    else:
        print(text(assessment), end="")
    return 0
