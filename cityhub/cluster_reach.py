"""Which of a stack's clusters answer, before `cityhub up` decides how to run.

`pulumi up --refresh` reads every resource of every cluster before changing anything, and a refresh has no
--continue-on-error: one unreachable edge made the whole `up` fail, the hub's changes included (found by
tests/integration/test_edge_clusters.py once it ran what `cityhub up` runs). So `cityhub up` asks each
cluster that has its own kubeconfig or context first; when one does not answer, it runs without --refresh
(the reachable clusters are updated but not re-read this time) and says so, naming the cluster. The
ambient cluster ($KUBECONFIG) is not asked: when the hub is down, nothing can be updated anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

TIMEOUT = 5.0
"""Seconds an API server has to answer GET /version."""


def unreachable(
    clusters: Iterable[Mapping[str, Any]], root: Path, timeout: float = TIMEOUT
) -> dict[str, str]:
    """Name → why, for each cluster (cityhub:clusters entries) whose API server does not answer."""
    from kubernetes import client, config

    out: dict[str, str] = {}
    for cluster in clusters:
        kubeconfig, context = cluster.get("kubeconfig"), cluster.get("context")
        if not (kubeconfig or context):
            continue
        path = (
            None
            if not kubeconfig
            else (root / kubeconfig if not Path(kubeconfig).is_absolute() else kubeconfig)
        )
        try:
            api = config.new_client_from_config(config_file=str(path) if path else None, context=context)
            with api:
                client.VersionApi(api).get_code(_request_timeout=timeout)
        except Exception as e:  # any failure to answer: refused, timed out, bad credentials, missing file
            out[str(cluster["name"])] = (
                f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            )
    return out


def up_args(base: tuple[str, ...], clusters: Iterable[Mapping[str, Any]], root: Path) -> tuple[str, ...]:
    """`base` (UP_ARGS), without --refresh when a cluster does not answer (printed, named)."""
    down = unreachable(clusters, root)
    if not down:
        return base
    for name, why in down.items():
        print(
            f"cityhub: 集群 {name} 无法连接 / cluster {name} does not answer ({why}): updating without "
            f"--refresh (a refresh needs every cluster); {name}'s resources fail and are named below, the "
            "other clusters are updated",
            flush=True,
        )
    return tuple(a for a in base if a != "--refresh")


def stack_clusters(config_file: Path) -> list[dict[str, Any]]:
    """cityhub:clusters of a Pulumi stack configuration file ([] when it declares none)."""
    import yaml

    try:
        doc = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return []
    return list((doc.get("config") or {}).get("cityhub:clusters") or [])
