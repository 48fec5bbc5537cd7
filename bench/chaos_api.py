"""The chaos run's calls to the API server (bench/chaos.py): requests created, deleted and read, Secrets
counted, each call retried while the API server restarts; whether the requests have settled; and the
(Request, Secret data) pairs the drivers' probes check at the end.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_report import Report, state_of
from chaos_workload import KINDS, Planned
from kubernetes import client

from cityhub import testkit as testing
from cityhub_api import labels, registry
from cityhub_api.api import GROUP, VERSION


def retry(what: str, call: Any, deadline: float = 900.0) -> Any:
    """Call until it succeeds (the API server may be restarting); gives up after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        try:
            return call()
        except Exception as e:  # any failure of the API server or kubectl: tried again, like a user would
            if time.monotonic() > end:
                raise RuntimeError(f"{what}: still failing after {deadline:.0f}s: {e}") from e
            print(f"  {what}: {str(e)[:200]}; trying again", flush=True)
            time.sleep(3)


def create(kubeconfig: Path, docs: list[dict[str, Any]]) -> None:
    def once() -> None:
        done = testing.apply(kubeconfig, docs, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-300:])

    retry(f"create {len(docs)} requests", once)


def delete(api: client.ApiClient, planned: list[Planned]) -> None:
    objects = client.CustomObjectsApi(api)
    for p in planned:

        def once(p: Planned = p) -> None:
            try:
                objects.delete_namespaced_custom_object(
                    GROUP, VERSION, p.namespace, p.plural, p.name, _request_timeout=30
                )
            except client.ApiException as e:
                if e.status != 404:
                    raise

        retry(f"delete {p.namespace}/{p.name}", once)


def snapshot(api: client.ApiClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every request of every type, as the API server has it: (type, namespace, name) → object."""
    objects = client.CustomObjectsApi(api)
    out = {}
    for type_name, (_, plural, _) in KINDS.items():
        found = objects.list_cluster_custom_object(GROUP, VERSION, plural, _request_timeout=60)
        for o in found["items"]:
            out[(type_name, o["metadata"]["namespace"], o["metadata"]["name"])] = o
    return out


def settled(planned: list[Planned], objects: dict[tuple[str, str, str], dict[str, Any]]) -> tuple[bool, str]:
    """Whether every kept request is Ready or unmet and every deleted one gone; and a one-line summary."""
    states: Counter[str] = Counter()
    for p in planned:
        obj = objects.get((p.type_name, *p.key))
        if p.delete_wave is not None:
            states["deleting" if obj else "deleted"] += 1
        else:
            states[state_of(obj) if obj else "missing"] += 1
    done = set(states) <= {"ready", "unmet", "deleted"}
    return done, ", ".join(f"{k} {v}" for k, v in sorted(states.items()))


def secret_counts(api: client.ApiClient, namespaces: set[str]) -> Counter[tuple[str, str]]:
    found = client.CoreV1Api(api).list_secret_for_all_namespaces(
        label_selector=labels.REQUEST, _request_timeout=60
    )
    return Counter(
        (s.metadata.namespace, s.metadata.labels[labels.REQUEST])
        for s in found.items
        if s.metadata.namespace in namespaces
    )


def probe_work(
    api: client.ApiClient, report: Report, offerings: dict[str, dict[str, Any]]
) -> dict[str, list[tuple[Any, dict[str, str]]]]:
    """(Request, Secret data) of every Ready request, per type; the Request built as the operator does."""
    from cityhub_operator import plans
    from cityhub_operator.reconcile import Reconciler
    from cityhub_operator.settings import OperatorSettings

    core = client.CoreV1Api(api)
    work: dict[str, list[tuple[Any, dict[str, str]]]] = {t: [] for t in KINDS}
    for type_name, ns, name in sorted(report.ready_keys()):
        body = report.objects[(type_name, ns, name)]
        ctype = registry.component_type(type_name)
        spec = body.get("spec") or {}
        known = [n for n, s in offerings.items() if s.get("componentType") == type_name]
        resolved = plans.resolve(
            ctype, spec, spec.get("offering", ""), offerings.get(spec.get("offering", "")), known
        )
        request = Reconciler(ctype, None, None, OperatorSettings()).request(body, resolved)  # type: ignore[arg-type]
        secret = core.read_namespaced_secret(body["status"]["connectionSecret"], ns, _request_timeout=30)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        work[type_name].append((request, data))
    return work
