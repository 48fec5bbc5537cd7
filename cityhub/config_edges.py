"""The edge rules of the stack configuration (多级贯通): what a deployed backend needs to know before it can
serve an edge cluster, and where an edge's operator reaches the edge. Checked by cityhub.config before
anything is built or changed.

A type marks such a setting in its schema's backendSettings with `"x-cityhub-edges": "required"` (messaging's
`leafnodes`: the address every edge's nats-server dials); the rule stays generic, the knowledge stays in the
type's folder."""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from cityhub.config_schema import ConfigProblem, key_path
from cityhub_api import registry

REQUIRED_WITH_EDGES = "x-cityhub-edges"


def edge_problems(raw: dict[str, Any]) -> list[ConfigProblem]:
    edges = [c["name"] for c in raw.get("clusters", []) if c.get("role") == "edge"]
    backends = raw.get("backends") or {}
    if not edges or not backends.get("deploy"):
        return []
    types = registry.component_types()
    problems = []
    for name in backends["deploy"]:
        if name not in types:
            continue  # the schema check names an unknown type
        properties = types[name].backend_settings.get("properties") or {}
        for key, prop in properties.items():
            if prop.get(REQUIRED_WITH_EDGES) == "required" and key not in (backends.get(name) or {}):
                problems.append(
                    ConfigProblem(
                        key_path(["backends", name, key]),
                        f"required with edge clusters ({', '.join(edges)}): {prop.get('description', '')}",
                    )
                )
    return problems


def api_server(kubeconfig: Path | None, context: str | None, given: str | None) -> str:
    """An edge's API server as the hub's pods reach it: `given` (cityhub:clusters[].apiServer), else the
    server of its kubeconfig's context. ValueError (naming the fix) when none is known or it is a loopback
    address, which on the hub's pods is the pod itself."""
    if given:
        return given
    if kubeconfig is None:
        raise ValueError("needs apiServer (its kubeconfig is $KUBECONFIG's, which is the hub's)")
    doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
    name = context or doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == name), None)
    cluster = next((c["cluster"] for c in doc.get("clusters", []) if ctx and c["name"] == ctx["cluster"]), {})
    server = str(cluster.get("server", ""))
    if not server:
        raise ValueError(f"{kubeconfig} names no server for context {name!r}; set apiServer")
    host = urllib.parse.urlsplit(server).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        raise ValueError(
            f"its kubeconfig's server {server} is a loopback address, which the hub's pods cannot reach; "
            "set apiServer to the URL at which the hub's pods reach the edge's API server"
        )
    return server
