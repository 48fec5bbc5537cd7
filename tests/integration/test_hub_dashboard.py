"""The hub capability dashboard (中枢能力仪表盘) in headless Chromium, on the embedded default with every
component type: `cityhub up`, `cityhub operator start` (every type's backend), 交通运输局 requests one
component of each type (the docs examples), 应急管理局 a channel; a real Prometheus scrapes the operator with
cityhub's rules; the sensing backend is stopped, so one incident is open. Then `cityhub dashboard` serves
the page and Chromium (DevTools protocol) loads it: it renders in Chinese, refreshes itself, logs no console
error, and its numbers are Prometheus' and the API server's. The report of the month prints to PDF.

CITYHUB_RENDER_DASHBOARD=docs/img/hub-dashboard.png also writes the README's screenshot from this run.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from cityhub import browser, supervisor
from cityhub.local_prometheus import Prometheus
from cityhub.report.build import CHINA_TIME
from cityhub.supervisor import Supervisor
from cityhub.testkit import apply, kubectl, wait_for
from cityhub_api import registry
from components import monitoring_rules
from components.monitoring_rules import RuleParams

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        browser.find() is None or shutil.which("pdftotext") is None,
        reason="headless Chromium, CJK fonts and poppler-utils are opt-in: run hack/browser.sh",
    ),
]
REPO = Path(__file__).resolve().parents[2]
CITYHUB = str(Path(sys.executable).parent / "cityhub")
EXAMPLES = REPO / "docs" / "examples" / "jiaotong"
PARAMS = RuleParams(interval="2s", long_interval="2s", component_down_for="4s", operator_down_for="4s")
REFRESH = 2
READ_DOM = """(() => {
  const cells = {};
  for (const td of document.querySelectorAll("[data-cell]")) {
    cells[td.dataset.cell] = {ready: +td.dataset.ready, requests: +td.dataset.requests,
                              unmet: +td.dataset.unmet, down: +td.dataset.down};
  }
  return {
    title: document.title, h1: document.querySelector("h1").textContent, cells,
    refreshed: document.getElementById("refreshed").textContent,
    firing: document.getElementById("card-firing").dataset.value,
    alerts: [...document.querySelectorAll("[data-alert]")].map(tr => tr.dataset.alert),
    mode: document.getElementById("card-mode").dataset.configured,
    inForce: document.getElementById("card-mode").dataset.inForce,
    departments: [...document.querySelectorAll("[data-department]")].map(tr => tr.dataset.department),
    text: document.body.innerText, height: document.documentElement.scrollHeight,
  };
})()"""


def run(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def requests() -> list[dict[str, Any]]:
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.yaml"))]
    yingji = {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "alerts", "namespace": "dept-yingji"},
        "spec": {"offering": "messaging"},
    }
    return [*docs, yingji]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The embedded default with every type, the requests Ready, a Prometheus, one backend stopped."""
    state = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CITYHUB_TEST_KUBECONFIG")}
    env.update(CITYHUB_STATE=str(state), CITYHUB_PROBE_INTERVAL="2", CITYHUB_PROBE_TIMEOUT="2")
    kubeconfig = state / "cluster" / "kubeconfig"
    prometheus: Prometheus | None = None
    try:
        run(CITYHUB, "up", env=env)
        run(CITYHUB, "operator", "start", "--drift-interval", "60", env=env)
        sup = Supervisor(state / "processes")
        operator = sup.get("operator")
        assert operator is not None
        apply(kubeconfig, requests())
        for doc in requests():
            if doc["apiVersion"].startswith("hub.cityhub.io/") and doc["kind"] != "ComponentFeedback":
                plural = registry.component_type_by_kind(doc["kind"]).plural
                kubectl(
                    kubeconfig,
                    "wait",
                    "--for=condition=Ready",
                    "--timeout=240s",
                    f"{plural}/{doc['metadata']['name']}",
                    "-n",
                    doc["metadata"]["namespace"],
                )
        prometheus = Prometheus(
            state / "prometheus",
            monitoring_rules.rules_yaml(PARAMS),
            {PARAMS.operator_job: [f"127.0.0.1:{operator.ports['metrics']}"]},
            interval=PARAMS.interval,
        ).start()
        prom = prometheus
        wait_for(
            lambda: (
                (prom.value('sum(cityhub_components{state="ready"})') or 0) >= len(registry.type_names()) + 1
            ),
            120,
            "every request Ready in Prometheus",
        )
        wait_for(lambda: (prom.value("sum(cityhub_probe_total)") or 0) >= 30, 120, "probes in Prometheus")
        # An open incident: the sensing backend goes away, its fleet is down and the alert fires.
        for rec in sup.records():
            if rec.serves.startswith("sensing"):
                sup.stop(rec.name)
        wait_for(lambda: prom.alerts("CityhubComponentDown"), 180, "CityhubComponentDown firing for sensing")
        yield {"env": env, "kubeconfig": kubeconfig, "prometheus": prometheus, "state": state}
    finally:
        if prometheus is not None:
            prometheus.stop()
        subprocess.run([CITYHUB, "operator", "stop"], env=env, capture_output=True, timeout=300)
        subprocess.run([CITYHUB, "cluster", "down"], env=env, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def dashboard(hub: dict[str, Any]) -> Iterator[str]:
    """`cityhub dashboard` as a user starts it, on a free port."""
    port = supervisor.free_port()
    rec = supervisor.spawn(
        "dashboard",
        [
            CITYHUB,
            "dashboard",
            "--prometheus",
            hub["prometheus"].url,
            "--kubeconfig",
            str(hub["kubeconfig"]),
            "--port",
            str(port),
            "--refresh",
            str(REFRESH),
        ],
        log=hub["state"] / "dashboard.log",
        env=hub["env"],
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        supervisor.wait_ready(rec, lambda: supervisor.http_ok(f"{url}healthz"), 30)
        yield url
    finally:
        supervisor.stop(rec)


async def _devtools(ws_url: str, url: str, settle: float) -> tuple[list[str], dict[str, Any]]:
    """Load `url` in the page target, let it refresh for `settle` seconds; console errors and the DOM."""
    errors: list[str] = []
    ids = itertools.count(1)

    def note(msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(json.dumps(params["args"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:

        async def call(method: str, **params: Any) -> dict[str, Any]:
            i = next(ids)
            await ws.send_json({"id": i, "method": method, "params": params})
            while True:
                msg = await ws.receive_json(timeout=60)
                if msg.get("id") == i:
                    assert "error" not in msg, msg
                    return dict(msg.get("result", {}))
                note(msg)

        for domain in ("Runtime", "Log", "Page"):
            await call(f"{domain}.enable")
        await call("Page.navigate", url=url)
        loop = asyncio.get_running_loop()
        end = loop.time() + settle
        while (left := end - loop.time()) > 0:
            try:
                note(await ws.receive_json(timeout=left))
            except TimeoutError:
                break
        result = await call("Runtime.evaluate", expression=READ_DOM, returnByValue=True)
    assert "exceptionDetails" not in result, result
    return errors, dict(result["result"]["value"])


def load_in_chromium(url: str, settle: float) -> tuple[list[str], dict[str, Any]]:
    port = supervisor.free_port()
    with tempfile.TemporaryDirectory(prefix="cityhub-devtools-") as profile:
        argv = [
            browser.require(),
            *browser.headless_args(Path(profile)),
            f"--remote-debugging-port={port}",
            "--window-size=1440,1000",
            "about:blank",
        ]
        rec = supervisor.spawn("chromium-devtools", argv, log=Path(profile) / "chromium.log")
        try:
            supervisor.wait_ready(
                rec, lambda: supervisor.http_ok(f"http://127.0.0.1:{port}/json/version"), 30
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                (page,) = [t for t in json.load(r) if t["type"] == "page"]
            return asyncio.run(_devtools(page["webSocketDebuggerUrl"], url, settle))
        finally:
            supervisor.stop(rec)


def test_the_dashboard_renders_in_chromium_with_prometheus_numbers(
    hub: dict[str, Any], dashboard: str, tmp_path: Path
) -> None:
    prom: Prometheus = hub["prometheus"]
    errors, dom = load_in_chromium(dashboard, settle=3 * REFRESH + 1)
    with urllib.request.urlopen(f"{dashboard}api/state", timeout=30) as r:
        state = json.load(r)

    assert errors == [], f"console errors: {errors}"
    assert dom["h1"] == "示例市中枢能力仪表盘" and dom["title"].startswith("示例市中枢能力仪表盘")
    assert dom["refreshed"].startswith("已刷新"), f"the inline script did not refresh: {dom['refreshed']}"
    assert state["errors"] == [] and state["operatorUp"] is True
    for heading in (
        "总览",
        "部门 × 组件",
        "服务等级目标与错误预算",
        "当前事件",
        "成熟度",
        "交通运输局",
        "应急管理局",
    ):
        assert heading in dom["text"], heading
    # the stack's departments, in its order, 交通运输局 with every type
    assert dom["departments"][:4] == ["dept-yingji", "dept-chengguan", "dept-dashuju", "dept-jiaotong"]
    for ctype in registry.type_names():
        assert dom["cells"][f"dept-jiaotong/{ctype}"]["requests"] == 1, ctype
    # requests Ready / all: the API server's Ready conditions
    for ctype in registry.component_types().values():
        listed = json.loads(kubectl(hub["kubeconfig"], "get", ctype.plural, "-A", "-o", "json").stdout)
        for obj in listed["items"]:
            cell = dom["cells"][f"{obj['metadata']['namespace']}/{ctype.name}"]
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"]["conditions"])
            assert cell["requests"] == 1 and cell["ready"] == int(ready), (ctype.name, cell, obj["status"])
    # components down and firing alerts: Prometheus' own answers
    for sample in prom.query('sum by (department, component_type) (cityhub_components{state="down"})'):
        m = sample["metric"]
        cell = dom["cells"][f"{m['department']}/{m['component_type']}"]
        assert cell["down"] == int(float(sample["value"][1])), (m, cell)
    assert dom["cells"]["dept-jiaotong/sensing"]["down"] == 1
    firing = [a for a in prom._get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert int(dom["firing"]) == len(firing) >= 1
    assert sorted(dom["alerts"]) == sorted(a["labels"]["alertname"] for a in firing)
    assert "CityhubComponentDown" in dom["alerts"]
    # SLOs: the month's probes and failures per department x type, as Prometheus counted them
    counted = {
        (s["metric"]["department"], s["metric"]["component_type"], s["metric"]["result"]): float(
            s["value"][1]
        )
        for s in prom.query("sum by (department, component_type, result) (cityhub_probe_total)")
    }
    for d in state["departments"]:
        for ctype, c in d["cells"].items():
            ok, failed = (
                counted.get((d["label"], ctype, "success"), 0),
                counted.get((d["label"], ctype, "failure"), 0),
            )
            assert abs(c["probes"] - (ok + failed)) <= max(6, 0.1 * (ok + failed)), (d["label"], ctype, c)
    sensing = next(d for d in state["departments"] if d["label"] == "dept-jiaotong")["cells"]["sensing"]
    assert sensing["probeFailures"] >= 1 and sensing["availability"] < 1
    # 平/急: configured normal, and the responders' namespaces at the normal priority
    assert dom["mode"] == "normal" and dom["inForce"] == "normal"
    assert state["mode"] == {
        "configured": "normal",
        "inForce": "normal",
        "responders": 2,
        "respondersAtEmergencyPriority": 0,
    }
    assert "maturity" in state and ("available" in state["maturity"])

    png = browser.screenshot(dashboard, tmp_path / "hub-dashboard.png", (1440, min(dom["height"] + 40, 3000)))
    assert png.stat().st_size > 50_000, "a blank screenshot"
    target = os.environ.get("CITYHUB_RENDER_DASHBOARD")
    if target:
        shutil.copyfile(png, REPO / target)


def test_the_months_report_prints_to_pdf_from_the_same_prometheus(
    hub: dict[str, Any], tmp_path: Path
) -> None:
    month = datetime.now(CHINA_TIME).strftime("%Y-%m")
    run(
        CITYHUB,
        "report",
        "--period",
        month,
        "--prometheus",
        hub["prometheus"].url,
        "--out",
        str(tmp_path),
        "--format",
        "json,pdf",
        env=hub["env"],
        timeout=180,
    )
    pdf = tmp_path / f"cityhub-report-{month}.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = "".join(text.split())
    doc = json.loads((tmp_path / f"cityhub-report-{month}.json").read_text(encoding="utf-8"))
    assert "示例市城市数字底座运营评价报告" in words and "交通运输局" in words and "应急管理局" in words
    jiaotong = next(d for d in doc["departments"] if d["label"] == "dept-jiaotong")
    assert {r["componentType"] for r in jiaotong["componentTypes"]} == set(registry.type_names())
    for row in jiaotong["componentTypes"]:
        assert row["componentType"] in words
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    assert next(tmp_path.glob("page*.png")).stat().st_size > 20_000


def test_on_the_embedded_default_the_dashboard_starts_its_own_prometheus(hub: dict[str, Any]) -> None:
    """Without --prometheus or CITYHUB_PROMETHEUS_URL: a Prometheus beside the local operator, recorded."""
    env = {k: v for k, v in hub["env"].items() if k != "CITYHUB_PROMETHEUS_URL"}
    first = run(CITYHUB, "dashboard", "--once", env=env, timeout=120)
    state = json.loads(first.stdout)
    assert "Prometheus of the embedded default" in first.stderr
    assert state["errors"] == [] and state["sources"]["prometheus"] != hub["prometheus"].url
    jiaotong = next(d for d in state["departments"] if d["label"] == "dept-jiaotong")
    assert jiaotong["cells"]["maps"]["ready"] == 1  # the API server's answer, as before
    again = json.loads(run(CITYHUB, "dashboard", "--once", env=env, timeout=120).stdout)
    assert again["sources"]["prometheus"] == state["sources"]["prometheus"], "the running one is reused"
    status = run(CITYHUB, "operator", "status", env=env).stdout
    assert "Prometheus for cityhub dashboard" in status
