"""The dashboard page (中文 first): one self-contained HTML document (inline CSS and a small inline script,
nothing external) rendered from the state document of state.py. The script replaces the page's body with
/fragment every few seconds; /api/state is the same state as JSON.

Figures carry data-* attributes with their raw values, so a test (or a screen reader's user script) reads the
numbers the page shows without parsing formatted text.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from html import escape
from typing import Any

from cityhub.dashboard import page_clusters

MODES = {
    "normal": ("平时", "normal"),
    "emergency": ("急时", "emergency"),
    "switching": ("切换中", "switching"),
}
CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;margin:0;
background:#f5f7fa;color:#1f2933;line-height:1.45}
header{background:#102a43;color:#fff;padding:.8rem 1.5rem}header h1{margin:0;font-size:1.5rem}
header .en,header .meta{color:#bcccdc}main{padding:1rem 1.5rem}
h2{font-size:1.1rem;margin:1.2rem 0 .4rem;border-bottom:2px solid #d9e2ec;padding-bottom:.2rem}
.en{color:#627d98;font-size:.82em;font-weight:normal}.meta{font-size:.85rem;color:#52606d}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.6rem}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:.5rem .8rem}
.card b{display:block;font-size:1.35rem;margin-top:.15rem}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.88rem}
th,td{border:1px solid #d9e2ec;padding:.3rem .5rem;text-align:center}th{background:#f0f4f8}
td:first-child,th:first-child,#maturity td,#alerts td{text-align:left}
.sub{display:block;font-size:.78em;color:#52606d}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}.warn{color:#b26a00}.idle{color:#9aa5b1}
td.ok{background:#e8f5e9}td.bad{background:#ffebee}td.warn{background:#fff8e1}
.mode-emergency{color:#c62828}.mode-normal{color:#2e7d32}.mode-switching{color:#b26a00}
.errors{background:#ffebee;border:1px solid #c62828;padding:.5rem .8rem;border-radius:6px}
#refreshed{float:right}
"""
SCRIPT = """
const every = %d * 1000;
async function refresh() {
  const status = document.getElementById("refreshed");
  try {
    const answer = await fetch("fragment", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    document.getElementById("hub").innerHTML = await answer.text();
    status.textContent = "已刷新 / refreshed " + new Date().toLocaleTimeString("zh-CN");
  } catch (e) {
    status.textContent = "刷新失败，稍后重试 / refresh failed, retrying: " + e.message;
  }
}
setInterval(refresh, every);
"""


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _fig(value: object) -> str:
    return "" if value is None else escape(str(value), quote=True)


def _card(zh: str, en: str, value: str, key: str, raw: object, cls: str = "") -> str:
    return (
        f'<div class="card" id="card-{key}" data-value="{_fig(raw)}">{zh}<br><span class="en">{en}</span>'
        f'<b class="{cls}">{value}</b></div>'
    )


def _mode_card(mode: dict[str, Any]) -> str:
    configured = MODES.get(mode["configured"], (mode["configured"], mode["configured"]))
    in_force = mode.get("inForce")
    shown = MODES.get(in_force or "", ("未知", "unknown"))
    detail = (
        f"{mode['respondersAtEmergencyPriority']}/{mode['responders']} 个应急部门已提级 / responders raised"
        if mode["responders"]
        else "无应急部门 / no emergency responders"
    )
    return (
        f'<div class="card" id="card-mode" data-configured="{_fig(mode["configured"])}" '
        f'data-in-force="{_fig(in_force)}">平急模式<br><span class="en">mode (configured · in force)</span>'
        f'<b class="mode-{escape(in_force or mode["configured"])}">{configured[0]} · {shown[0]}</b>'
        f'<span class="sub">{configured[1]} · {shown[1]}; {detail}</span></div>'
    )


def _cards(s: dict[str, Any]) -> str:
    t, o = s["totals"], s["objectives"]
    up = s["operatorUp"]
    avail, spent = t["availability"], t["budgetSpent"]
    firing = t["firingAlerts"]
    return (
        '<div class="cards">'
        + "".join(
            [
                _mode_card(s["mode"]),
                _card(
                    "运营者",
                    "operator",
                    {True: "运行 / up", False: "停止 / DOWN", None: "—"}[up],
                    "operator",
                    up,
                    "ok" if up else "bad" if up is False else "idle",
                ),
                _card(
                    "组件申请 就绪/申请",
                    "requests Ready / all",
                    f"{t['ready']} / {t['requests']}",
                    "ready",
                    t["ready"],
                    "bad" if t["unmet"] else "ok",
                ),
                _card(
                    "未满足", "not Ready", str(t["unmet"]), "unmet", t["unmet"], "bad" if t["unmet"] else "ok"
                ),
                _card(
                    "故障组件",
                    "components down",
                    str(t["componentsDown"]),
                    "down",
                    t["componentsDown"],
                    "bad" if t["componentsDown"] else "ok",
                ),
                _card(
                    "告警（事件）",
                    "alerts firing",
                    "—" if firing is None else str(firing),
                    "firing",
                    firing,
                    "bad" if firing else "ok",
                ),
                _card(
                    "本月可用性",
                    f"availability, month (objective {o['probeObjective']:.2%})",
                    pct(avail),
                    "availability",
                    avail,
                    "" if avail is None else "ok" if avail >= o["probeObjective"] else "bad",
                ),
                _card(
                    "错误预算消耗",
                    "error budget spent",
                    pct(spent, 0),
                    "budget",
                    spent,
                    "" if spent is None else "ok" if spent <= 0.5 else "warn" if spent <= 1 else "bad",
                ),
                _card(
                    "Apdex",
                    "Apdex (month)",
                    "—" if t["apdex"] is None else f"{t['apdex']:.2f}",
                    "apdex",
                    t["apdex"],
                ),
            ]
        )
        + "</div>"
    )


def _unreadable(d: dict[str, Any]) -> str:
    """The cell of a type a department on an unreadable cluster may have asked for: unknown, in red."""
    error = d.get("clusterError")
    if not error:
        return ""
    return f'<td class="bad" title="{_fig(error)}">不可读<span class="sub">unreachable</span></td>'


def _matrix(s: dict[str, Any]) -> str:
    types = s["componentTypes"]
    head = "".join(
        f'<th>{escape(t["displayName"])}<span class="sub">{escape(t["name"])}</span></th>' for t in types
    )
    rows = []
    for d in s["departments"]:
        cells = []
        for t in types:
            c = d["cells"].get(t["name"])
            if c is None:
                cells.append(unreadable if (unreadable := _unreadable(d)) else '<td class="idle">—</td>')
                continue
            down = c["components"]["down"]
            known = c["requests"] is not None  # None: its cluster's API server was not read
            cls = "bad" if not known or c["unmet"] or down else "ok" if c["requests"] else "idle"
            avail = c["availability"]
            counts = (
                f'{c["ready"]} / {c["requests"]}<span class="sub">未满足 unmet {c["unmet"]} · '
                if known
                else '— / —<span class="sub">集群不可读 cluster unreachable · '
            )
            cells.append(
                f'<td class="{cls}" data-cell="{escape(d["label"])}/{escape(t["name"])}" '
                f'data-requests="{_fig(c["requests"])}" data-ready="{_fig(c["ready"])}" '
                f'data-unmet="{_fig(c["unmet"])}" data-down="{down}" data-availability="{_fig(avail)}">'
                f"{counts}故障 down {down}<br>可用性 {pct(avail)}</span></td>"
            )
        name = escape(d["name"] or d["label"])
        edge = page_clusters.edge_of(s, d.get("cluster"))
        rows.append(
            f'<tr data-department="{escape(d["label"])}" data-cluster="{_fig(d.get("cluster"))}"><td>{name}'
            f'<span class="sub">{escape(d["label"])}{edge}</span></td>{"".join(cells)}</tr>'
        )
    return (
        f'<table id="matrix"><thead><tr><th>部门<span class="sub">department</span></th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="meta">格中为 就绪/申请（API 服务器中各组件申请的 Ready 条件）、故障组件与本月可用性。'
        '<span class="en">Each cell: requests Ready / all (their Ready condition in the API server), '
        "components down, availability this month.</span></p>"
    )


def _slos(s: dict[str, Any]) -> str:
    o = s["objectives"]
    rows = []
    for d in s["departments"]:
        for ctype, c in d["cells"].items():
            if not c["probes"]:
                continue
            avail, spent = c["availability"], c["budgetSpent"]
            rows.append(
                f'<tr data-slo="{escape(d["label"])}/{escape(ctype)}" data-probes="{c["probes"]}" '
                f'data-failures="{c["probeFailures"]}"><td>{escape(d["name"] or d["label"])}</td>'
                f"<td>{escape(ctype)}</td>"
                f'<td class="{"ok" if (avail or 0) >= o["probeObjective"] else "bad"}">'
                f"{pct(avail)}</td><td>{c['probeFailures']} / {c['probes']}</td>"
                f'<td class="{"ok" if (spent or 0) <= 0.5 else "warn" if (spent or 0) <= 1 else "bad"}">'
                f"{pct(spent, 0)}</td><td>{'—' if c['apdex'] is None else format(c['apdex'], '.2f')}</td>"
                f"<td>{c['incidentsOpened']} / {c['incidentsResolved']}</td>"
                f"<td>{'—' if c['mttrSeconds'] is None else format(c['mttrSeconds'], '.0f') + ' s'}</td></tr>"
            )
    if not rows:
        return '<p class="idle">本月尚无探测数据。<span class="en">No probes this month yet.</span></p>'
    return (
        '<table id="slos"><thead><tr><th>部门<span class="sub">department</span></th>'
        '<th>组件类型<span class="sub">type</span></th>'
        f'<th>可用性<span class="sub">availability (≥ {o["probeObjective"]:.2%})</span></th>'
        '<th>失败/探测<span class="sub">failed / probes</span></th>'
        '<th>错误预算消耗<span class="sub">budget spent</span></th><th>Apdex</th>'
        '<th>事件 发生/解决<span class="sub">incidents opened/resolved</span></th>'
        '<th>平均解决时长<span class="sub">MTTR</span></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _utc(stamp: str | None) -> str:
    """Prometheus' activeAt (RFC 3339, nanoseconds) to the minute: 2026-11-30 04:32 UTC."""
    return f"{stamp[:16].replace('T', ' ')} UTC" if stamp else ""


def _alerts(s: dict[str, Any]) -> str:
    alerts = s["alerts"]
    if alerts is None:
        return (
            '<p class="idle">告警不可读（Prometheus 不可达）。<span class="en">Alerts unreadable.</span></p>'
        )
    if not alerts:
        return '<p class="ok" id="no-alerts">当前没有告警。<span class="en">No alerts firing.</span></p>'
    names = {d["label"]: d["name"] for d in s["departments"] if d["name"]}

    def who(label: str | None) -> str:
        if not label:
            return ""
        return f'{escape(names.get(label, label))}<span class="sub">{escape(label)}</span>'

    rows = "".join(
        f'<tr data-alert="{escape(a["name"])}"><td>{escape(a["name"])}</td><td>{escape(a["severity"])}</td>'
        f"<td>{who(a['department'])}</td><td>{escape(a['componentType'] or '')}</td>"
        f"<td>{escape(_utc(a['since']))}</td><td>{escape(a['summary'])}</td>"
        + (
            f'<td><a href="{escape(a["runbookUrl"], quote=True)}">处置手册 runbook</a></td>'
            if a["runbookUrl"]
            else "<td></td>"
        )
        + "</tr>"
        for a in alerts
    )
    return (
        '<table id="alerts"><thead><tr><th>告警<span class="sub">alert</span></th><th>级别'
        '<span class="sub">severity</span></th><th>部门<span class="sub">department</span></th>'
        '<th>组件类型<span class="sub">type</span></th><th>开始<span class="sub">since</span></th>'
        '<th>摘要<span class="sub">summary</span></th><th></th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _maturity(m: dict[str, Any]) -> str:
    if not m.get("available"):
        return (
            f'<p class="idle" id="maturity-missing">{escape(m["zh"])}。'
            f'<span class="en">{escape(m["en"])}.</span></p>'
        )
    rows = "".join(
        f'<tr><td>{escape(str(d.get("zh", "")))}<span class="sub">{escape(str(d.get("en", "")))}</span></td>'
        f"<td>{escape(str(d.get('level', '—')))} / {escape(str(d.get('maxLevel', '—')))}</td>"
        f"<td>{escape(str(d.get('evidence', '')))}</td></tr>"
        for d in m.get("dimensions") or []
        if isinstance(d, dict)
    )
    overall = m.get("overall")
    total = (
        f"<p>总体 / overall: <b>{escape(str(overall.get('level')))} / {escape(str(overall.get('maxLevel')))}"
        "</b></p>"
        if isinstance(overall, dict)
        else ""
    )
    return (
        f'{total}<table id="maturity"><thead><tr><th>维度<span class="sub">dimension</span></th>'
        '<th>等级<span class="sub">level</span></th><th>依据<span class="sub">evidence</span></th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        '<p class="meta">cityhub 依据行动方案自拟的模型，不是国家标准。<span class="en">cityhub\'s model '
        "derived from the action plan, not a national standard.</span></p>"
    )


def fragment(s: dict[str, Any]) -> str:
    """The page's body inside <main id="hub">: what the script refreshes."""
    errors = "".join(f"<li>{escape(e['source'])}: {escape(e['message'])}</li>" for e in s["errors"])
    p = s["period"]
    return (
        (
            f'<div class="errors" id="errors">数据源不可读 / sources unreadable:<ul>{errors}</ul></div>'
            if errors
            else ""
        )
        + f'<h2>总览 <span class="en">Overview</span></h2>{_cards(s)}'
        + '<h2>集群 <span class="en">Clusters (多级贯通: hub and edges)</span></h2>'
        + page_clusters.panel(s)
        + '<h2>部门 × 组件 <span class="en">Departments × components</span></h2>'
        + _matrix(s)
        + '<h2>服务等级目标与错误预算 <span class="en">SLOs and error budgets, '
        f"{escape(p['label'])} so far</span>"
        f"</h2>{_slos(s)}"
        + f'<h2>当前事件 <span class="en">Open incidents (alerts firing)</span></h2>{_alerts(s)}'
        + f'<h2>成熟度 <span class="en">Maturity self-assessment</span></h2>{_maturity(s["maturity"])}'
        + f'<p class="meta">生成时间 / generated {escape(s["generatedAt"])} · 数据来源 / sources: '
        f"Prometheus {escape(s['sources']['prometheus'])}, "
        f"API server ({escape(s['sources']['kubeconfig'])})</p>"
    )


def page(s: dict[str, Any], refresh_seconds: int) -> str:
    city = escape(s["city"] or "")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{city}中枢能力仪表盘 · Hub capability dashboard</title><style>{CSS}</style></head>
<body><header><span id="refreshed" class="meta">每 {refresh_seconds} 秒刷新 / refreshes every
{refresh_seconds} s</span><h1>{city}中枢能力仪表盘</h1>
<span class="en">{city} hub capability dashboard · stack {escape(s["stack"])} · JSON: <a style="color:#bcccdc"
href="api/state">api/state</a></span></header>
<main id="hub">{fragment(s)}</main>
<script>{SCRIPT % refresh_seconds}</script></body></html>
"""
