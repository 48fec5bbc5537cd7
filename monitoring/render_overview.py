# ruff: noqa: E501  (an HTML template: its lines are as long as the markup)
"""Render the hub overview from a live Prometheus as an HTML page and a PNG (headless chromium).

    .venv/bin/python monitoring/render_overview.py http://127.0.0.1:9090 docs/img/hub-overview.png

The page shows what the Grafana dashboard (monitoring/dashboards/hub-overview.json) shows, with the same
recorded series: departments x components status, SLOs and error budgets, incidents, Apdex, feedback.
The integration test calls `render` against its real Prometheus when CITYHUB_RENDER_OVERVIEW names a file.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return list(json.load(r)["data"]["result"])


def _num(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def _bar(value: float, good: float) -> str:
    color = "#2e7d32" if value >= good else "#c62828"
    return (
        f'<div class="bar"><div style="width:{max(0.0, min(value, 1.0)) * 100:.1f}%;background:{color}"></div>'
        f"<span>{value:.2%}</span></div>"
    )


def page(base: str) -> str:
    states: dict[tuple[str, str], dict[str, float]] = {}
    for s in _query(base, "sum by (department, component_type, state) (cityhub_components)"):
        m = s["metric"]
        states.setdefault((m["department"], m["component_type"]), {})[m["state"]] = _num(s)
    rows = []
    for (dept, ctype), by in sorted(states.items()):
        status = "down" if by.get("down") else ("ready" if by.get("ready") else "pending")
        rows.append(
            f'<tr><td>{html.escape(dept)}</td><td>{html.escape(ctype)}</td><td class="{status}">{status}</td>'
            f"<td>{by.get('ready', 0):g}</td><td>{by.get('down', 0):g}</td><td>{by.get('pending', 0):g}</td></tr>"
        )
    availability = _query(base, "1 - cityhub:probe_errors:ratio_rate30d")
    budget = _query(base, "clamp_min(cityhub:probe_error_budget:remaining, 0)")
    apdex = _query(base, "cityhub:probe_apdex:ratio_rate1h")
    p95 = _query(base, "cityhub:probe_duration_seconds:p95_rate5m")
    prov = _query(base, "cityhub:provisioning_seconds:p95_rate1d")
    feedback = _query(base, "cityhub:feedback_rating:mean")
    opened = _query(base, "sum(cityhub:incidents_opened:increase1d)")
    resolved = _query(base, "sum(cityhub:incidents_resolved:increase1d)")
    mttr = _query(base, "avg(cityhub:incident_resolution_seconds:mean1d)")
    up = _query(base, 'up{job="cityhub-operator"}')
    firing = [
        a
        for a in json.load(urllib.request.urlopen(f"{base}/api/v1/alerts", timeout=10))["data"]["alerts"]
        if a["state"] == "firing"
    ]

    def by_component(samples: list[dict[str, Any]], fmt: Any) -> str:
        out = []
        for s in sorted(samples, key=lambda s: (s["metric"].get("department", ""), s["metric"]["component_type"])):
            m = s["metric"]
            out.append(f"<tr><td>{html.escape(m.get('department', ''))}</td>"
                       f"<td>{html.escape(m['component_type'])}</td><td>{fmt(_num(s))}</td></tr>")  # fmt: skip
        return "".join(out) or '<tr><td colspan="3" class="muted">no data yet</td></tr>'

    def stat(title: str, value: str) -> str:
        return f'<div class="stat"><div class="t">{title}</div><div class="v">{value}</div></div>'

    first = (lambda xs, f: f(_num(xs[0])) if xs else "-")  # noqa: E731
    stats = "".join(
        [
            stat("Operator up", first(up, lambda v: "yes" if v == 1 else "NO")),
            stat("Components ready", f"{sum(b.get('ready', 0) for b in states.values()):g}"),
            stat("Open incidents", f"{sum(b.get('down', 0) for b in states.values()):g}"),
            stat("Incidents opened / resolved (1d)", f"{first(opened, '{:.0f}'.format)} / {first(resolved, '{:.0f}'.format)}"),
            stat("Mean time to resolve (1d)", first(mttr, lambda v: f"{v:.1f} s")),
            stat("Alerts firing", str(len(firing))),
        ]
    )
    avail_rows = "".join(
        f"<tr><td>{html.escape(s['metric']['department'])}</td><td>{html.escape(s['metric']['component_type'])}</td>"
        f"<td>{_bar(_num(s), 0.995)}</td><td>{_bar(next((_num(b) for b in budget if b['metric'] == s['metric']), 0), 0.5)}</td></tr>"
        for s in sorted(availability, key=lambda s: (s["metric"]["department"], s["metric"]["component_type"]))
    )  # fmt: skip
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body{{font-family:DejaVu Sans,Arial,sans-serif;background:#111417;color:#d8d9da;margin:18px;width:1240px}}
h1{{font-size:20px;margin:0 0 4px}} h2{{font-size:14px;margin:0 0 6px;color:#9fa7b3}}
.muted{{color:#7b8087}} .grid{{display:grid;grid-template-columns:1fr 1fr;gap:12px}}
.panel{{background:#181b1f;border:1px solid #2c3235;border-radius:4px;padding:10px}}
.stats{{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:12px 0}}
.stat{{background:#181b1f;border:1px solid #2c3235;border-radius:4px;padding:8px}}
.stat .t{{font-size:11px;color:#9fa7b3}} .stat .v{{font-size:24px;font-weight:bold;margin-top:4px}}
table{{width:100%;border-collapse:collapse;font-size:12px}} td,th{{padding:4px 6px;border-bottom:1px solid #2c3235;text-align:left}}
.ready{{color:#73bf69;font-weight:bold}} .down{{color:#f2495c;font-weight:bold}} .pending{{color:#fade2a}}
.bar{{position:relative;background:#2c3235;height:16px;border-radius:2px}} .bar div{{height:16px;border-radius:2px}}
.bar span{{position:absolute;left:6px;top:0;font-size:11px;color:#fff}}
</style></head><body>
<h1>cityhub: hub overview</h1><div class="muted">live from Prometheus {html.escape(base)} at {now};
same series as monitoring/dashboards/hub-overview.json</div>
<div class="stats">{stats}</div>
<div class="grid">
<div class="panel"><h2>Departments &times; components</h2><table><tr><th>department</th><th>type</th><th>status</th>
<th>ready</th><th>down</th><th>pending</th></tr>{"".join(rows)}</table></div>
<div class="panel"><h2>Probe availability (30d, objective 99.5 %) and error budget left</h2><table>
<tr><th>department</th><th>type</th><th>availability</th><th>budget left</th></tr>{avail_rows}</table></div>
<div class="panel"><h2>Apdex (probe latency vs the offering's T), 1h</h2><table>
<tr><th>department</th><th>type</th><th>Apdex</th></tr>{by_component(apdex, lambda v: f"{v:.2f}")}</table></div>
<div class="panel"><h2>Latency: probe p95 (5m) · request → Ready p95 (1d)</h2><table>
<tr><th>department</th><th>type</th><th>seconds</th></tr>{by_component(p95, lambda v: f"probe {v * 1000:.0f} ms")}
{by_component(prov, lambda v: f"to Ready {v:.1f} s")}</table></div>
<div class="panel"><h2>Feedback (mean rating 1-5, ComponentFeedback)</h2><table>
<tr><th></th><th>type</th><th>rating</th></tr>{by_component(feedback, lambda v: f"{v:.2f}")}</table></div>
<div class="panel"><h2>Alerts firing</h2><table><tr><th>alert</th><th>department</th><th>severity</th></tr>
{"".join(f"<tr><td>{html.escape(a['labels']['alertname'])}</td><td>{html.escape(a['labels'].get('department', ''))}</td><td>{html.escape(a['labels'].get('severity', ''))}</td></tr>" for a in firing) or '<tr><td colspan="3" class="muted">none</td></tr>'}
</table></div>
</div></body></html>"""  # fmt: skip


def render(base: str, png: Path) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("chromium is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "hub-overview.html"
        page_file.write_text(page(base), encoding="utf-8")
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp}/profile", f"--screenshot={png.resolve()}", "--window-size=1280,900",
             page_file.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return png


if __name__ == "__main__":
    print(render(sys.argv[1].rstrip("/"), Path(sys.argv[2])))
