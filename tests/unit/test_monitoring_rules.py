"""The monitoring rules: generated from components/monitoring_rules.py, checked and tested by promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from cityhub_operator import metrics
from prometheus_client import REGISTRY

from cityhub import paths
from components import monitoring_dashboard, monitoring_rules
from components.monitoring_rules import RuleParams

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "monitoring" / "tests" / "cityhub.rules.test.yaml"


def promtool() -> Path:
    tool = paths.bin_dir() / "promtool"
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run hack/prometheus.sh", pytrace=False)
    return tool


def alerts() -> list[dict]:
    return [r for g in monitoring_rules.groups() for r in g["rules"] if "alert" in r]


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert monitoring_rules.main(["--check"]) == 0, capsys.readouterr().out


def test_promtool_accepts_the_rules() -> None:
    run = subprocess.run(
        [promtool(), "check", "rules", monitoring_rules.RULES_FILE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_pass() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", TESTS.name],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_routes_to_a_department_and_explains_itself() -> None:
    records = {r["record"]: r["expr"] for g in monitoring_rules.groups() for r in g["rules"] if "record" in r}
    for alert in alerts():
        labels, notes = alert["labels"], alert["annotations"]
        assert labels["severity"] in ("page", "ticket"), alert["alert"]
        assert {"summary", "description", "runbook_url"} <= set(notes), alert["alert"]
        assert notes["runbook_url"] == f"{monitoring_rules.DEFAULT_RUNBOOK_BASE}/{alert['alert'].lower()}"
        used = [records[n] for n in re.findall(r"cityhub:[a-z0-9_:]+", alert["expr"])]
        grouped = re.findall(r"(?:by|on) \(([^)]*)\)", "\n".join([alert["expr"], *used]))
        assert "department" in labels or (grouped and all("department" in g for g in grouped)), alert["alert"]


def test_every_alert_has_a_firing_and_a_silent_promtool_test() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never seen firing"
    assert names - silent == set(), "alerts never seen staying silent"


def test_burn_rate_alerts_follow_the_workbook() -> None:
    by_name = {a["alert"]: a for a in alerts()}
    fast, slow, ticket = (by_name[f"CityhubProbeBudgetBurn{k}"] for k in ("Fast", "Slow", "Ticket"))
    assert "ratio_rate1h > 0.072" in fast["expr"] and "ratio_rate5m > 0.072" in fast["expr"]
    assert "ratio_rate6h > 0.03" in slow["expr"] and "ratio_rate30m > 0.03" in slow["expr"]
    assert "ratio_rate3d > 0.005" in ticket["expr"] and "ratio_rate6h > 0.005" in ticket["expr"]
    assert (fast["labels"]["severity"], slow["labels"]["severity"], ticket["labels"]["severity"]) == (
        "page",
        "page",
        "ticket",
    )


def test_ratios_never_divide_by_zero_traffic() -> None:
    for group in monitoring_rules.groups():
        for rule in group["rules"]:
            expr = rule["expr"]
            if "/\n" in expr:
                assert "> 0)" in expr, rule.get("record") or rule.get("alert")


def test_metric_labels_stay_within_department_type_offering() -> None:
    allowed = {
        "department",
        "component_type",
        "offering",
        "state",
        "result",
        "zone",
        "controller",
        "operation",
        "le",
    }
    ours = [m for m in REGISTRY.collect() if m.name.startswith("cityhub_")]
    assert {"cityhub_components", "cityhub_probe", "cityhub_provisioning_seconds"} <= {m.name for m in ours}
    for family in ours:
        for sample in family.samples:
            assert set(sample.labels) <= allowed, (family.name, sample.labels)
    for metric in vars(metrics).values():
        names = getattr(metric, "_labelnames", ())
        assert not {"name", "request", "url", "user", "uid", "namespace"} & set(names), names


def test_test_parameters_shrink_windows_and_bad_ones_are_refused() -> None:
    fast = monitoring_rules.groups(RuleParams(interval="1s", component_down_for="3s"))
    down = next(r for g in fast for r in g["rules"] if r.get("alert") == "CityhubComponentDown")
    assert down["for"] == "3s" and fast[0]["interval"] == "1s"
    with pytest.raises(ValueError, match=r"provisioning_threshold_seconds=45.*bounds"):
        monitoring_rules.groups(RuleParams(provisioning_threshold_seconds=45))
    with pytest.raises(ValueError, match=r"cityhub:monitoring.probeTarget: unknown"):
        monitoring_rules.with_overrides(RuleParams(), {"probeTarget": 0.9})
    with pytest.raises(ValueError, match=r"probe_objective=1.5"):
        monitoring_rules.with_overrides(RuleParams(), {"probeObjective": 1.5})


def test_prometheus_operator_objects_carry_the_same_groups() -> None:
    params = RuleParams()
    rule = monitoring_rules.prometheus_rule(params, "cityhub-system", {"app": "x"})
    assert rule["kind"] == "PrometheusRule" and rule["spec"]["groups"] == monitoring_rules.groups(params)
    monitor = monitoring_rules.service_monitor(params, "cityhub-system", {})
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "cityhub-operator"}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_dashboard_queries_only_recorded_or_operator_metrics() -> None:
    board = monitoring_dashboard.dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(board["panels"]) >= 10
    recorded = {r["record"] for g in monitoring_rules.groups() for r in g["rules"] if "record" in r}
    for expr in exprs:
        for name in re.findall(r"(cityhub:[a-z0-9_:]+)", expr):
            assert name in recorded, name


def test_every_alerts_runbook_url_resolves_to_its_page_in_docs() -> None:
    """Each alert's default runbook_url is where the docs site publishes docs/runbooks/cityhub/<name>.md;
    each page is bilingual (中文 first): what the alert means, how to confirm it, how to fix it."""
    base = monitoring_rules.DEFAULT_RUNBOOK_BASE + "/"
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(base), url
        page = monitoring_rules.RUNBOOKS_DIR / (url.removeprefix(base) + ".md")
        assert page.is_file(), f"{alert['alert']}: {url} has no page {page.relative_to(REPO)}"
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {alert['alert']}"), page
        for heading in ("## 含义", "## 对部门的影响", "## 确认", "## 处置", "## 找谁"):
            assert heading in text, f"{page.relative_to(REPO)} lacks {heading}"
        assert text.index("## 含义") < text.index("Meaning"), f"{page.relative_to(REPO)}: 中文 comes first"
    pages = {p.stem for p in monitoring_rules.RUNBOOKS_DIR.glob("*.md")}
    assert pages == {a["alert"].lower() for a in alerts()}, "a runbook page without an alert, or the reverse"


@pytest.mark.parametrize(
    "base", ["https://ops.jianghai.gov.cn/runbooks/cityhub", "https://ops.jianghai.gov.cn/runbooks/cityhub/"]
)
def test_the_stacks_runbook_base_is_joined_with_one_separator(base: str) -> None:
    params = monitoring_rules.with_overrides(RuleParams(), {"runbookBase": base})
    urls = {a["alert"]: a["annotations"]["runbook_url"] for a in monitoring_rules.alert_rules(params)}
    assert urls["CityhubOperatorDown"] == "https://ops.jianghai.gov.cn/runbooks/cityhub/cityhuboperatordown"


def test_windows_of_a_day_or_more_are_evaluated_every_two_and_a_half_minutes() -> None:
    """The 30-day rate over raw counters is most of a cycle's cost (bench/README.md, SLO rules vs Sloth):
    its group runs 5x less often, under Prometheus's 5-minute lookback so the ticket never sees a gap."""
    by_name = {g["name"]: g for g in monitoring_rules.groups()}
    assert list(by_name) == ["cityhub-sli", "cityhub-sli-long", "cityhub-alerts"]
    long_group = by_name["cityhub-sli-long"]
    assert long_group["interval"] == "2m30s" and by_name["cityhub-sli"]["interval"] == "30s"
    long_names = {r["record"] for r in long_group["rules"]}
    assert {"cityhub:probe_errors:ratio_rate30d", "cityhub:probe_errors:ratio_rate3d",
            "cityhub:probe_error_budget:remaining", "cityhub:incidents_opened:increase1d"} <= long_names
    short_names = {r["record"] for r in by_name["cityhub-sli"]["rules"]}
    assert "cityhub:probe_errors:ratio_rate6h" in short_names and not short_names & long_names
    tuned = monitoring_rules.with_overrides(RuleParams(), {"longInterval": "4m"})
    assert monitoring_rules.groups(tuned)[1]["interval"] == "4m"
    for bad in ("5m", "10m", "2.5m", "soon"):
        with pytest.raises(ValueError, match=rf"long_interval={bad}: .*under 5m"):
            monitoring_rules.with_overrides(RuleParams(), {"longInterval": bad})
