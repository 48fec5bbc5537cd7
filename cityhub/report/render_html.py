"""The report as one static, self-contained HTML page (inline CSS, no script, nothing external), 中文 first.

The page a city publishes: a city summary, what needs attention, and per department a table by component type
with the three evaluation dimensions (服务响应度, 问题解决度, 用户满意度) and availability.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from datetime import timedelta
from html import escape

from cityhub.maturity.render import html as maturity_html
from cityhub.report.cost import Showback
from cityhub.report.model import Department, Figures, Objectives, Report, apdex_band

NO_DATA = "无数据 / no data"
NO_PRICES = "未提供价目表 / no price sheet"
SEVERITY = {3: ("严重", "critical"), 2: ("重要", "major"), 1: ("提示", "minor")}
CSS = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#1f2933;line-height:1.5}
h1{font-size:1.6rem;margin-bottom:.2rem}
h2{border-bottom:2px solid #d9e2ec;padding-bottom:.2rem;margin-top:2rem}
.en{color:#52606d;font-size:.85em;font-weight:normal}.meta{color:#52606d}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:.6rem .9rem;min-width:10rem}
.card b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0 1rem}th,td{border:1px solid #d9e2ec;
padding:.3rem .45rem;text-align:right}th{background:#f0f4f8}td:first-child,th:first-child{text-align:left}
tr.total td{font-weight:bold;background:#f8fafc}.nodata{color:#9aa5b1}.bad{color:#c62828;font-weight:bold}
.ok{color:#2e7d32}.sev3{color:#c62828}.sev2{color:#ef6c00}.sev1{color:#52606d}
"""


def _cell(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _nodata() -> str:
    return f'<span class="nodata">{NO_DATA}</span>'


def pct(value: float | None, digits: int = 2) -> str:
    return _nodata() if value is None else f"{value:.{digits}%}"


def seconds(value: float | None) -> str:
    if value is None:
        return _nodata()
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _judged(text: str, ok: bool | None) -> tuple[str, str]:
    return text, "" if ok is None else ("ok" if ok else "bad")


def _figure_cells(f: Figures, o: Objectives) -> list[str]:
    within = f.provisioned_within(o.provisioning_threshold_seconds)
    availability = f.availability
    p95, target = f.probe_p95_seconds, f.apdex_threshold_seconds
    score = f.apdex_total.score
    band = apdex_band(score)
    spent = f.probe_budget_spent(o.probe_objective)
    components = f.components
    cells = [
        _cell(
            f"{components.get('ready', 0)} / {components.get('down', 0)} / {components.get('pending', 0)}",
            "bad" if components.get("down", 0) else "",
        ),
        _cell(
            *_judged(pct(availability), None if availability is None else availability >= o.probe_objective)
        ),
        _cell(str(f.provisioned)),
        _cell(*_judged(pct(within, 0), None if within is None else within >= o.provisioning_objective)),
        _cell(seconds(f.provisioning_p95_seconds)),
        _cell(
            *_judged(
                f"{seconds(p95)} / {seconds(target)}" if p95 is not None else _nodata(),
                None if p95 is None or target is None else p95 <= target,
            )
        ),
        _cell(
            f"{f.incidents_opened} / {f.incidents_resolved}",
            "bad" if f.incidents_opened > f.incidents_resolved else "",
        ),
        _cell(seconds(f.mttr_seconds)),
        _cell(*_judged(pct(spent, 0), None if spent is None else spent <= 1)),
        _cell(_nodata() if score is None or band is None else f"{score:.2f}（{band[0]} / {band[1]}）"),
        _cell(_nodata() if f.feedback_mean is None else f"{f.feedback_mean:.1f} / 5（{f.feedback_count}）"),
    ]
    return cells


HEADER = (
    "组件类型<br><span class=en>component type</span>",
    "组件 就绪/故障/待定<br><span class=en>ready/down/pending</span>",
    "可用性<br><span class=en>availability</span>",
    "开通申请<br><span class=en>requests</span>",
    "按时开通<br><span class=en>Ready in time</span>",
    "开通 p95<br><span class=en>provisioning p95</span>",
    "探测 p95 / 目标<br><span class=en>probe p95 / target</span>",
    "事件 发生/解决<br><span class=en>incidents opened/resolved</span>",
    "平均解决时长<br><span class=en>MTTR</span>",
    "错误预算消耗<br><span class=en>budget spent</span>",
    "Apdex<br><span class=en>Apdex</span>",
    "用户评分（条数）<br><span class=en>rating (count)</span>",
)


def _department(d: Department, o: Objectives) -> str:
    title = escape(d.title)
    label = escape(d.label)
    head = f'<h3 id="{label}">{title} <span class="en">{label}</span></h3>'
    if not d.figures.has_data:
        why = "本期没有该部门的组件或流量 / no components or traffic in the period"
        return f'{head}<p class="nodata">{NO_DATA}：{why}</p>'
    rows = [f"<tr><th>{h}</th>" if i == 0 else f"<th>{h}</th>" for i, h in enumerate(HEADER)]
    body = "".join(
        f"<tr>{_cell(escape(r.component_type))}{''.join(_figure_cells(r.figures, o))}</tr>" for r in d.rows
    )
    total = f'<tr class="total">{_cell("合计 / total")}{"".join(_figure_cells(d.figures, o))}</tr>'
    return f"{head}<table><thead>{''.join(rows)}</tr></thead><tbody>{body}{total}</tbody></table>"


def _summary(report: Report) -> str:
    f, o = report.figures, report.objectives
    depts = report.departments
    with_data = sum(1 for d in depts if d.figures.has_data)
    score = f.apdex_total.score
    cards = [
        ("部门", "departments with data", f"{with_data} / {len(depts)}"),
        (
            "组件 就绪/故障/待定",
            "components ready/down/pending",
            " / ".join(str(f.components.get(s, 0)) for s in ("ready", "down", "pending")),
        ),
        ("可用性", f"availability (objective {o.probe_objective:.2%})", pct(f.availability)),
        (
            f"{o.provisioning_threshold_seconds:g} 秒内开通",
            f"Ready within {o.provisioning_threshold_seconds:g} s (objective {o.provisioning_objective:.0%})",
            pct(f.provisioned_within(o.provisioning_threshold_seconds), 0),
        ),
        ("事件 发生/解决", "incidents opened/resolved", f"{f.incidents_opened} / {f.incidents_resolved}"),
        ("平均解决时长", "MTTR", seconds(f.mttr_seconds)),
        ("Apdex", "Apdex", _nodata() if score is None else f"{score:.2f}"),
        (
            "用户评分",
            "mean rating",
            _nodata() if f.feedback_mean is None else f"{f.feedback_mean:.1f} / 5（{f.feedback_count}）",
        ),
        (
            "成本合计",
            "cost showback" + ("" if report.cost is None else f" ({report.cost.currency})"),
            f'<span class="nodata">{NO_PRICES}</span>' if report.cost is None else money(report.cost.total),
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card">{zh}<br><span class="en">{escape(en)}</span><b>{value}</b></div>'
            for zh, en, value in cards
        )
        + "</div>"
    )


def _attention(report: Report) -> str:
    if not report.findings:
        return "<p>本期没有需要关注的事项。<span class=en>Nothing needs attention in this period.</span></p>"
    items = []
    for f in report.findings:
        zh, en = SEVERITY[f.severity]
        who = escape(f.department_name or f.department)
        items.append(
            f'<li><span class="sev{f.severity}">[{zh} / {en}]</span> <b>{who}</b> · '
            f"{escape(f.component_type)}："
            f'{escape(f.zh)} <span class="en">{escape(f.en)}</span></li>'
        )
    return "<ol>" + "".join(items) + "</ol>"


def _maturity(report: Report) -> str:
    if report.maturity is None:
        return (
            f'<p class="nodata">{NO_DATA}：生成报告时无法读取集群 / the cluster could not be read when the '
            "report was made</p>"
        )
    return maturity_html(report.maturity)


def money(value: float | None) -> str:
    return '<span class="nodata">未定价 / unpriced</span>' if value is None else f"{value:,.2f}"


def hours(value: float) -> str:
    return f"{value:,.2f}"


def _cost_tables(c: Showback, names: dict[str, str]) -> str:
    cur = escape(c.currency)
    by_dept = "".join(
        f"<tr>{_cell(escape(names.get(d.label, d.label)))}{_cell(hours(d.component_hours))}"
        f"{_cell(money(d.cost))}{_cell(pct(c.share(d), 1))}</tr>"
        for d in c.departments
    )
    by_dept += (
        f'<tr class="total">{_cell("合计 / total")}{_cell(hours(c.component_hours))}{_cell(money(c.total))}'
        f"{_cell(pct(1.0 if c.total > 0 else None, 1))}</tr>"
    )
    rows = []
    for d in c.departments:
        for t in d.types:
            # offerings of one type priced apart have no single price: the JSON lists them
            price = money(t.price) if t.price is not None or not t.priced else "按服务目录项 / per offering"
            rows.append(
                f"<tr>{_cell(escape(names.get(d.label, d.label)))}{_cell(escape(t.component_type))}"
                f"{_cell(hours(t.component_hours))}{_cell(price)}{_cell(money(t.cost))}</tr>"
            )
    by_type = "".join(rows) or f'<tr><td colspan="5" class="nodata">{NO_DATA}</td></tr>'
    return (
        f"<table><thead><tr><th>部门<br><span class=en>department</span></th>"
        f"<th>组件时<br><span class=en>component-hours</span></th>"
        f"<th>费用（{cur}）<br><span class=en>cost ({cur})</span></th>"
        f"<th>占比<br><span class=en>share</span></th></tr></thead><tbody>{by_dept}</tbody></table>"
        f"<table><thead><tr><th>部门<br><span class=en>department</span></th>"
        f"<th>组件类型<br><span class=en>component type</span></th>"
        f"<th>组件时<br><span class=en>component-hours</span></th>"
        f"<th>单价（{cur}/组件时）<br><span class=en>price ({cur} per component-hour)</span></th>"
        f"<th>费用（{cur}）<br><span class=en>cost ({cur})</span></th></tr></thead><tbody>{by_type}</tbody>"
        "</table>"
    )


def _cost(report: Report) -> str:
    c = report.cost
    if c is None:
        return (
            f'<p class="nodata">{NO_PRICES}：本报告不含成本分摊；'
            "用 <code>--prices 文件</code> 指定城市的价目表。<span class=en>This report has no cost "
            "showback: pass <code>--prices FILE</code> with the city's price sheet.</span></p>"
        )
    names = {d.label: d.title for d in report.departments}
    step = "" if c.resolution_seconds is None else f" · 积分步长 / resolution {c.resolution_seconds:g} s"
    since = c.measured_from.isoformat(timespec="minutes") if c.measured_from else ""
    since = f" · 计量起点 / measured from {since}" if since else ""
    unpriced = ""
    if c.unpriced:
        listed = "、".join(f"{escape(t)}（{hours(h)} 组件时）" for t, h in c.unpriced.items())
        unpriced = (
            f'<p class="bad">价目表未定价的组件类型，不计费用：{listed}。'
            '<span class="en">Component types the sheet does not price have no cost: add them to the '
            "sheet.</span></p>"
        )
    return (
        f'<p class="meta">价目表 / price sheet: {escape(c.sheet_name or c.sheet_source)}'
        f"（{escape(c.sheet_source)}）· 币种 / currency: {escape(c.currency)}{step}{since}<br>"
        "按组件时分摊：部门持有的组件（就绪或故障，占用后端资源）× 时长 × 单价；"
        "待定（未就绪或被拒绝）的申请不计费。部门自身工作负载的 CPU/内存不在此列。<br>"
        '<span class="en">Allocated by component-hours: the components a department holds (ready or down: '
        "they hold backend resources) × hours × the price; pending requests are not billed. The "
        "departments' own workloads' CPU and memory are not included.</span></p>"
        f"{unpriced}{_cost_tables(c, names)}"
    )


def render(report: Report) -> str:
    p, o = report.period, report.objectives
    city = escape(report.city or "")
    last_day = (p.end - timedelta(days=1)).date()
    upto = "" if p.complete else f"（截至 / up to {p.evaluated_at.isoformat(timespec='minutes')}）"
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{city}城市数字底座运营评价 {p.label} · Operations evaluation</title><style>{CSS}</style></head>
<body>
<h1>{city}城市数字底座运营评价报告 · {p.label}</h1>
<p class="en">{city} digital foundation: operations evaluation, {p.label}</p>
<p class="meta">评价期 / period: {p.start.date()} – {last_day}（北京时间 / UTC+8）{upto}<br>
目标 / objectives: 可用性 availability ≥ {o.probe_objective:.2%}；
{o.provisioning_objective:.0%} 的申请在 {o.provisioning_threshold_seconds:g} 秒内就绪 /
of requests Ready within {o.provisioning_threshold_seconds:g} s<br>
数据来源 / source: {escape(report.source)} · 生成时间 / generated {report.generated_at.isoformat()}</p>
<h2>城市概览 <span class="en">City summary</span></h2>
{_summary(report)}
<h2>需要关注 <span class="en">Needs attention</span></h2>
{_attention(report)}
<h2>部门评价 <span class="en">Departments</span></h2>
<p class="meta">服务响应度：开通时效与探测时延；问题解决度：事件、平均解决时长、错误预算；
用户满意度：Apdex 与部门评分。<br>
<span class="en">Responsiveness: provisioning and probe latency; problem resolution: incidents, MTTR,
error budget; satisfaction: Apdex and departments' ratings.</span></p>
{"".join(_department(d, o) for d in report.departments)}
<h2>成本分摊 <span class="en">Cost showback</span></h2>
{_cost(report)}
<h2>成熟度自评 <span class="en">Maturity self-assessment</span></h2>
{_maturity(report)}
<h2>说明 <span class="en">Notes</span></h2>
<p class="meta">可用性 = 成功的黑盒探测 / 全部探测；Apdex =（满意 + 容忍/2）/ 全部探测，
阈值 T 为各服务目录项的 apdex.thresholdSeconds；评分为期末存在的 ComponentFeedback（1–5 分）。
本期中途创建的组件只计其存在期间。“{NO_DATA}”表示该期没有可计算的数据，而不是零分。<br>
<span class="en">Availability = successful black-box probes / all probes; Apdex = (satisfied +
tolerating/2) / all probes against each offering's threshold T; ratings are the
ComponentFeedback objects at the period's end. Components created mid-period count from their creation.
“no data” means nothing could be measured, not a zero score. Machine-readable figures: the JSON beside this
page (schema cityhub.io/report/v1).</span></p>
</body></html>
"""
