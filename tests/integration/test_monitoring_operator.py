"""Monitoring end to end: a real Prometheus scrapes the real operator (embedded cluster, real nats-server)
and evaluates the generated rules with test-sized intervals.

Stop nats-server → the probes of the department's channel fail → CityhubComponentDown fires for that
department; start it again → the alert resolves and the incident's time to resolve is recorded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cityhub import testkit as testing
from component_types.messaging.driver.server import LocalServer, free_port
from cityhub_operator.testing import OperatorProcess, channel, wait_for

from cityhub import paths
from components import monitoring_rules
from components.monitoring_rules import RuleParams

pytestmark = pytest.mark.integration
SECRET = b"monitoring-integration-secret-0123456789-abcdefghijk"
DEPARTMENTS = ("yingji", "jiaotong")
OFFERING = {
    "apiVersion": "hub.cityhub.io/v1alpha1",
    "kind": "ComponentOffering",
    "metadata": {"name": "messaging"},
    "spec": {
        "componentType": "messaging",
        "defaultPlan": "standard",
        "apdex": {"thresholdSeconds": 0.25},
        "plans": [
            {
                "name": "standard",
                "limits": {"maxAge": "7d", "maxBytes": "1Gi", "maxMessages": 1000000},
                "defaults": {"maxAge": "1d", "maxBytes": "16Mi"},
            }
        ],
    },
}
# Test-only rule parameters: evaluated every second, alerts after 3 s instead of 5 min.
OVERVIEW = Path(__file__).resolve().parents[2] / "monitoring" / "render_overview.py"
PARAMS = RuleParams(interval="1s", component_down_for="3s", operator_down_for="3s")


class Prometheus:
    """A real Prometheus on a free loopback port, stopped by its PID."""

    def __init__(self, directory: Path, target: str) -> None:
        self.directory, self.port = directory, free_port()
        (directory / "cityhub.rules.yaml").write_text(monitoring_rules.rules_yaml(PARAMS))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["cityhub.rules.yaml"],
            "scrape_configs": [{"job_name": PARAMS.operator_job, "static_configs": [{"targets": [target]}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        binary = paths.bin_dir() / "prometheus"
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run hack/prometheus.sh", pytrace=False)
        with (self.directory / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, 30, "Prometheus to be ready")
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            assert self.process is not None and self.process.poll() is None, "prometheus exited; see its log"
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def _get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        return [
            a
            for a in self._get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == state
        ]


@pytest.fixture(scope="module")
def cluster(kubeconfig: Path) -> Path:
    testing.install_crds(kubeconfig)  # with ComponentFeedback
    testing.apply(kubeconfig, [OFFERING])
    testing.ensure_namespaces(kubeconfig, DEPARTMENTS)
    return kubeconfig


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(tmp_path_factory.mktemp("nats"), SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    cluster: Path, nats_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, Prometheus]]:
    tmp = tmp_path_factory.mktemp("monitoring")
    (tmp / "secret").write_text(SECRET.decode())
    metrics_port = free_port()
    env = {
        "CITYHUB_COMPONENTS": "messaging",
        "CITYHUB_NATS_URL": nats_server.url,
        "CITYHUB_NATS_SECRET_FILE": str(tmp / "secret"),
        "CITYHUB_NATS_TIMEOUT": "2",
        "CITYHUB_METRICS_PORT": str(metrics_port),
        "CITYHUB_DRIFT_INTERVAL": "3",
        "CITYHUB_RETRY_BASE_DELAY": "0.5",
        "CITYHUB_RETRY_MAX_DELAY": "2",
        "CITYHUB_PROBE_INTERVAL": "1",
        "CITYHUB_PROBE_TIMEOUT": "2",
    }
    operator = OperatorProcess(cluster, env, tmp / "operator.log").start()
    prometheus = Prometheus(tmp, f"127.0.0.1:{metrics_port}")
    try:
        prometheus.start()
        yield operator, prometheus
        if os.environ.get("CITYHUB_RENDER_OVERVIEW"):  # the docs' picture, from this run's real data
            spec = importlib.util.spec_from_file_location("render_overview", OVERVIEW)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.render(f"http://127.0.0.1:{prometheus.port}", Path(os.environ["CITYHUB_RENDER_OVERVIEW"]))
    finally:
        prometheus.stop()
        try:
            testing.delete_requests(cluster, "messagingchannels")
        finally:
            operator.stop()


def test_backend_outage_fires_the_departments_alert_and_resolves_as_an_incident(
    stack: tuple[OperatorProcess, Prometheus], cluster: Path, nats_server: LocalServer
) -> None:
    operator, prom = stack
    testing.apply(cluster, [channel(d, "alerts") for d in DEPARTMENTS])

    def scraped() -> bool:
        assert operator.alive(), f"the operator exited; see {operator.log}"
        return prom.value('up{job="cityhub-operator"}') == 1

    wait_for(scraped, 30, "Prometheus to scrape the operator")
    ready = 'cityhub:components:count{state="ready", department="%s"}'
    for d in DEPARTMENTS:
        wait_for(lambda d=d: prom.value(ready % d) == 1, 90, f"{d}'s channel to be ready in Prometheus")
    wait_for(
        lambda: (prom.value('sum(cityhub_probe_total{department="yingji", result="success"})') or 0) >= 2,
        30,
        "successful probes of yingji's channel",
    )
    assert prom.value('cityhub_provisioning_seconds_count{department="yingji"}') == 1
    assert prom.value('cityhub_probe_apdex_threshold_seconds{component_type="messaging"}') == 0.25
    # while the operator was starting, its scrape failed: CityhubOperatorDown may have fired; it resolves
    wait_for(lambda: not prom.alerts("CityhubOperatorDown"), 30, "CityhubOperatorDown to be silent")
    assert prom.alerts("CityhubComponentDown") == []

    nats_server.stop()
    down_at = time.monotonic()
    try:

        def firing_for(department: str) -> dict[str, Any] | None:
            alerts = prom.alerts("CityhubComponentDown")
            return next((a for a in alerts if a["labels"]["department"] == department), None)

        alert = wait_for(lambda: firing_for("yingji"), 60, "CityhubComponentDown to fire for yingji")
        fired_after = time.monotonic() - down_at
        wait_for(lambda: firing_for("jiaotong"), 30, "CityhubComponentDown to fire for jiaotong too")
        assert alert["labels"]["severity"] == "page" and alert["labels"]["component_type"] == "messaging"
        assert alert["annotations"]["summary"] == "1 messaging component(s) of yingji are down"
        assert alert["annotations"]["runbook_url"].endswith("#cityhubcomponentdown")
        assert prom.value('cityhub_incidents_opened_total{department="yingji"}') == 1
    finally:
        nats_server.start()
    up_at = time.monotonic()
    wait_for(lambda: not prom.alerts("CityhubComponentDown"), 60, "CityhubComponentDown to resolve")
    resolved_after = time.monotonic() - up_at
    resolved = 'cityhub_incidents_resolved_total{department="yingji"}'
    wait_for(lambda: prom.value(resolved) == 1, 20, "the incident to be resolved")
    # The recording rule needs two evaluations after the resolved counter moved before it has a value.
    time_to_resolve = wait_for(
        lambda: prom.value('cityhub:incident_resolution_seconds:mean1d{department="yingji"}'),
        30,
        "the time to resolve to be recorded",
    )
    assert time_to_resolve is not None and 0 < time_to_resolve < 120, time_to_resolve
    assert prom.value(ready % "yingji") == 1
    print(f"\nalert fired {fired_after:.1f}s after the outage; resolved {resolved_after:.1f}s after restore;"
          f" incident time to resolve {time_to_resolve:.1f}s")  # fmt: skip


def test_feedback_ratings_are_aggregated_per_component_type(
    stack: tuple[OperatorProcess, Prometheus], cluster: Path
) -> None:
    _, prom = stack

    def feedback(namespace: str, name: str, rating: int, ctype: str = "messaging") -> dict[str, Any]:
        return {
            "apiVersion": "hub.cityhub.io/v1alpha1",
            "kind": "ComponentFeedback",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"componentType": ctype, "component": "alerts", "rating": rating, "comment": "ok"},
        }

    testing.apply(
        cluster,
        [
            feedback("yingji", "q3", 5),
            feedback("jiaotong", "q3", 2),
            feedback("jiaotong", "nonsense", 1, ctype="teleporter"),  # not a served type: not a label value
        ],
    )
    wait_for(
        lambda: prom.value('cityhub:feedback_rating:mean{component_type="messaging"}') == 3.5,
        30,
        "the mean messaging rating to be 3.5",
    )
    assert prom.query('cityhub_feedback_ratings{component_type="teleporter"}') == []
    refused = testing.apply(cluster, [feedback("yingji", "bad", 9)], check=False)
    assert refused.returncode != 0 and "spec.rating" in refused.stderr
    testing.kubectl(cluster, "delete", "componentfeedback", "q3", "-n", "jiaotong")
    wait_for(
        lambda: prom.value('cityhub:feedback_rating:mean{component_type="messaging"}') == 5,
        30,
        "the deleted rating to drop out of the mean",
    )
