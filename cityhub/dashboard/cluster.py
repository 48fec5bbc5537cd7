"""What an API server says: departments' namespaces (name, 平/急 priority) and every component request's
Ready condition, read with the kubernetes client and a kubeconfig (and context): the one the CLI uses for the
hub (the embedded default's, or $KUBECONFIG), an edge cluster's own from the stack config (clusters.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cityhub_api import labels, registry
from cityhub_api.api import EMERGENCY_PRIORITY, GROUP, VERSION


@dataclass(frozen=True)
class Namespace:
    label: str
    """The namespace, e.g. dept-yingji (the metrics' department label)."""
    slug: str
    name: str | None
    """cityhub.io/display-name, e.g. 应急管理局."""
    emergency_responder: bool
    at_emergency_priority: bool


@dataclass(frozen=True)
class Requests:
    """Component requests of one department and type: how many, how many Ready=True."""

    total: int = 0
    ready: int = 0

    @property
    def unmet(self) -> int:
        return self.total - self.ready


@dataclass(frozen=True)
class ClusterState:
    namespaces: tuple[Namespace, ...] = ()
    requests: dict[tuple[str, str], Requests] = field(default_factory=dict)
    """(namespace, component type) → its requests."""
    error: str | None = None
    """Why the API server could not be read (the page says so instead of showing zeros)."""
    read_at: datetime | None = None
    """When it was read (edge clusters are read less often than the hub: serve.EDGE_SECONDS)."""

    @property
    def mode_in_force(self) -> str | None:
        """emergency when every emergency responder runs at the emergency priority, normal when none does,
        switching in between; None without responders (nothing to tell the modes apart by)."""
        responders = [n for n in self.namespaces if n.emergency_responder]
        if not responders:
            return None
        raised = sum(n.at_emergency_priority for n in responders)
        return "normal" if raised == 0 else "emergency" if raised == len(responders) else "switching"


def _ready(obj: dict[str, object]) -> bool:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions or []
    )


def read(kubeconfig: Path, context: str | None = None, timeout: float = 10.0) -> ClusterState:
    """Departments and requests now; a ClusterState with `error` when the API server cannot be read."""
    at = datetime.now(UTC).replace(microsecond=0)
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        items = (
            client.CoreV1Api(api)
            .list_namespace(label_selector=f"{labels.TENANT}=department", _request_timeout=timeout)
            .items
        )
        namespaces = tuple(
            sorted(
                (
                    Namespace(
                        label=ns.metadata.name,
                        slug=(ns.metadata.labels or {}).get(labels.DEPARTMENT, ns.metadata.name),
                        name=(ns.metadata.annotations or {}).get(labels.DISPLAY_NAME),
                        emergency_responder=(ns.metadata.labels or {}).get(labels.EMERGENCY_RESPONDER)
                        == "true",
                        at_emergency_priority=(ns.metadata.labels or {}).get(labels.PRIORITY_CLASS)
                        == EMERGENCY_PRIORITY,
                    )
                    for ns in items
                ),
                key=lambda n: n.label,
            )
        )
        custom = client.CustomObjectsApi(api)
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for ctype in registry.component_types().values():
            try:
                listed = custom.list_cluster_custom_object(
                    GROUP, VERSION, ctype.plural, _request_timeout=timeout
                )
            except ApiException as e:
                if e.status == 404:
                    continue  # the type's CRD is not installed: it has no requests
                raise
            for obj in listed.get("items", []):
                key = (obj["metadata"]["namespace"], ctype.name)
                counts[key][0] += 1
                counts[key][1] += _ready(obj)
    except (ApiException, HTTPError, OSError, ValueError, TypeError, config.ConfigException) as e:
        where = f"{kubeconfig} (context {context})" if context else str(kubeconfig)
        return ClusterState(error=f"API server not readable with {where}: {str(e)[:300]}", read_at=at)
    return ClusterState(
        namespaces=namespaces,
        requests={k: Requests(total, ready) for k, (total, ready) in counts.items()},
        read_at=at,
    )


Reader = Callable[[Path, str | None], ClusterState]
"""How the dashboard reads one API server (kubeconfig, context): `read`, or a test's fake."""
