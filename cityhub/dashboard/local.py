"""The embedded default's Prometheus: `cityhub dashboard` without --prometheus starts one next to the local
operator (`cityhub operator start`), scraping its metrics with cityhub's rules (monitoring/rules/), recorded
with the operator's processes so `cityhub operator status|stop` show and stop it. Its data stays in
.state/prometheus, so a restarted dashboard keeps the month's history."""

from __future__ import annotations

from cityhub import paths
from cityhub.local_prometheus import Prometheus
from cityhub.supervisor import Supervisor

NAME = "prometheus"
OPERATOR = "operator"
OPERATOR_JOB = "cityhub-operator"
RULES = ("monitoring", "rules", "cityhub.rules.yaml")
"""The plain rule file components/monitoring_rules.py generates (the CLI may not import the stack layer)."""
SCRAPE_INTERVAL = "15s"


def prometheus_url(timeout: float = 60.0) -> str:
    """The URL of the embedded default's Prometheus, started now unless it already scrapes the operator."""
    sup = Supervisor(paths.state_dir() / "processes")
    operator = sup.get(OPERATOR)
    if operator is None or "metrics" not in operator.ports:
        raise ValueError(
            "no Prometheus: pass --prometheus URL or set CITYHUB_PROMETHEUS_URL, or run "
            "`cityhub operator start` first (the dashboard then starts one for the embedded default)"
        )
    target = f"127.0.0.1:{operator.ports['metrics']}"
    serves = f"Prometheus for cityhub dashboard: scrapes the operator at {target}"
    running = sup.get(NAME)
    if running is not None:
        if running.serves == serves:
            return running.url
        sup.stop(NAME)  # the operator was restarted on another port: scrape the new one
    rules = paths.repo_root().joinpath(*RULES).read_text(encoding="utf-8")
    prometheus = Prometheus(
        paths.state_dir() / NAME,
        rules,
        {OPERATOR_JOB: [target]},
        interval=SCRAPE_INTERVAL,
        records=sup,
        serves=serves,
    )
    return prometheus.start(timeout).url
