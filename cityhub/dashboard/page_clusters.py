"""The page's clusters panel (集群 / 多级贯通): each cluster of the stack, its role, division, the departments
placed on it, whether its API server answers and its component requests. An unreachable cluster reads
不可达 in red with the error, never zeros."""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from html import escape
from typing import Any

ROLES = {"hub": ("中枢", "hub"), "edge": ("边缘", "edge")}


def role(name: str) -> tuple[str, str]:
    return ROLES.get(name, (name, name))


def _attr(value: object) -> str:
    return "" if value is None else escape(str(value), quote=True)


def _departments(c: dict[str, Any]) -> str:
    depts = c["departments"]
    if not depts:
        return '<td class="idle" data-col="departments">0<span class="sub">无部门 / none</span></td>'
    names = [d["name"] or d["label"] for d in depts]
    return (
        f'<td data-col="departments" title="{_attr("、".join(names))}">{len(depts)}'
        f'<span class="sub">{escape("、".join(names))}</span></td>'
    )


def _api_server(c: dict[str, Any]) -> str:
    at = f" · 读取于 read {escape(c['readAt'][11:19])} UTC" if c.get("readAt") else ""
    if c["reachable"]:
        return (
            f'<td class="ok" data-col="api">可达<span class="sub">reachable · '
            f"{c['namespaces']} 个部门命名空间 department namespaces{at}</span></td>"
        )
    return (
        f'<td class="bad" data-col="api" title="{_attr(c["error"])}">不可达'
        f'<span class="sub">unreachable{at}: {escape(c["error"] or "")}</span></td>'
    )


def _requests(c: dict[str, Any]) -> str:
    if not c["reachable"]:
        return '<td class="bad" data-col="requests">—<span class="sub">未读取 / not read</span></td>'
    cls = "bad" if c["unmet"] else "ok" if c["requests"] else "idle"
    return (
        f'<td class="{cls}" data-col="requests">{c["ready"]} / {c["requests"]}'
        f'<span class="sub">未满足 unmet {c["unmet"]}</span></td>'
    )


def panel(s: dict[str, Any]) -> str:
    clusters = s.get("clusters") or []
    if not clusters:
        return '<p class="idle">栈配置未列出集群。<span class="en">No clusters configured.</span></p>'
    rows = []
    for c in clusters:
        zh, en = role(c["role"])
        division = c["divisionCode"]
        where = (
            f'{escape(c["divisionName"] or "—")}<span class="sub">{escape(division)}</span>'
            if division
            else '—<span class="sub">未指定 / none</span>'
        )
        access = f"context {c['context']}" if c["context"] else c["kubeconfig"]
        rows.append(
            f'<tr data-cluster="{_attr(c["name"])}" data-role="{_attr(c["role"])}" '
            f'data-reachable="{str(c["reachable"]).lower()}" data-departments="{len(c["departments"])}" '
            f'data-requests="{_attr(c["requests"])}" data-ready="{_attr(c["ready"])}">'
            f'<td>{escape(c["name"])}<span class="sub">{escape(access)}</span></td>'
            f'<td>{zh}<span class="sub">{en}</span></td><td>{where}</td>'
            f"{_departments(c)}{_api_server(c)}{_requests(c)}</tr>"
        )
    return (
        '<table id="clusters"><thead><tr><th>集群<span class="sub">cluster</span></th>'
        '<th>角色<span class="sub">role</span></th><th>行政区划<span class="sub">division</span></th>'
        '<th>部门<span class="sub">departments placed</span></th>'
        '<th>API 服务器<span class="sub">API server</span></th>'
        '<th>组件申请 就绪/申请<span class="sub">requests Ready / all</span></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="meta">边缘集群用各自的 kubeconfig 读取，每分钟一次。'
        '<span class="en">Edge clusters are read with their own kubeconfig, once a minute.</span></p>'
    )


def edge_of(s: dict[str, Any], cluster: str | None) -> str:
    """' · 边缘 xihu-edge' for a department placed on an edge cluster (the matrix's row label), else ''."""
    roles = {c["name"]: c["role"] for c in s.get("clusters") or []}
    if cluster is None or roles.get(cluster) != "edge":
        return ""
    return f" · 边缘 edge {escape(cluster)}"
