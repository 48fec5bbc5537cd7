"""The world the fuzzer attacks: the API as the stack installs it, and the operator on every real backend.

    FuzzCity           the dev stack's departments plus two whose names collide when joined with '-'
                       (dept-fuzz / a-z and dept-fuzz-a / z), their namespaces as DepartmentTenancy labels
                       them, their compute quotas (the inference driver's GPU check), the CRDs, the catalog
                       and the admission policies with these departments as parameters; a Secret the
                       operator does not own (hostile requests name it as their secretName)
    OperatorUnderTest  every type's local backend (cityhub.local_operator.start_backends, in a private
                       CITYHUB_STATE) and `python -m cityhub_operator` serving them (cityhub.testkit)

Both undo what they did (`close()`): a test shares its cluster with other modules.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from city import org_code
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from cityhub import paths, supervisor
from cityhub import testkit as testing
from cityhub.config import load_config
from cityhub.config_codes import make_credit_code
from cityhub.config_model import GRADE_LABELS, Department, HubConfig
from cityhub.local_backends import LocalBackend
from cityhub.local_operator import start_backends
from cityhub.supervisor import Supervisor
from cityhub_api import registry
from cityhub_api.api import GROUP, VERSION
from cityhub_api.catalog import load_offerings, manifests
from components import admission
from components.compute import priority_class_for, quota_hard
from components.tenancy import namespace_labels

DEV_STACK = paths.repo_root() / "stacks" / "Pulumi.dev.yaml"
COLLIDING = ("fuzz", "fuzz-a")
"""Slugs of the two departments added to the dev city: dept-fuzz/a-z and dept-fuzz-a/z join to the same
dept-fuzz-a-z, the shape of name that once mapped two departments' requests onto one backend object."""
VICTIM_SECRET = "fuzz-victim"
"""A Secret in every department namespace that no request owns: requests naming it must not overwrite it."""
VICTIM_DATA = {"owner": "the department itself, not the operator"}


def city_config() -> HubConfig:
    """The dev stack's configuration with the two colliding departments (general and important data)."""
    doc = yaml.safe_load(DEV_STACK.read_text(encoding="utf-8"))
    raw = {k.removeprefix("cityhub:"): v for k, v in doc["config"].items()}
    for i, (slug, grade) in enumerate(zip(COLLIDING, ("重要", "一般"), strict=True)):
        raw["departments"].append(
            {
                "slug": slug,
                "name": f"模糊测试{i}局",
                "creditCode": make_credit_code("11330100" + org_code(4_100_000 + i)),
                "level": "市",
                "divisionCode": "330100",
                "zone": "egov",
                "dataGrade": grade,
                "quota": {"cpu": 4, "memory": "8Gi", "pods": 30, "gpu": 1, "storage": "10Gi"},
            }
        )
    return load_config(raw)


@dataclass
class FuzzCity:
    """The dev city with its admission in force on `kubeconfig`; `close()` removes what `install()` added."""

    kubeconfig: Path
    config: HubConfig = field(default_factory=city_config)
    status_writers: tuple[str, ...] = ()
    _made: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(kind, name, namespace) of the objects install() created, to delete on close."""

    @property
    def departments(self) -> dict[str, Department]:
        return {d.namespace: d for d in self.config.departments}

    @property
    def namespaces(self) -> list[str]:
        return [d.namespace for d in self.config.departments]

    def grade(self, namespace: str) -> str:
        """general, important or core: what a request without a grade label carries."""
        return GRADE_LABELS[self.departments[namespace].data_grade]

    def install(self) -> FuzzCity:
        kc = self.kubeconfig
        testing.install_crds(kc)
        catalog = manifests(load_offerings())
        testing.apply(kc, catalog)
        whoami = json.loads(testing.kubectl(kc, "auth", "whoami", "-o", "json").stdout)
        # The operator runs with this kubeconfig's identity here, so that identity writes request status.
        self.status_writers = (admission.OPERATOR_USER, whoami["status"]["userInfo"]["username"])
        params = admission.params_spec(
            self.config.departments,
            self.config.zones,
            admission.catalog_offerings(catalog),
            admission.request_types(),
            self.status_writers,
        )
        crd = admission.params_crd()
        docs = admission.manifests(params)
        for doc in [*self._namespaces(), crd, *docs, *self._quotas(), *self._victims()]:
            meta = doc["metadata"]
            if not self._exists(doc["kind"], meta["name"], meta.get("namespace")):
                self._made.append((doc["kind"], meta["name"], meta.get("namespace")))
        testing.apply(kc, self._namespaces())
        testing.apply(kc, [*self._quotas(), *self._victims()])
        testing.apply(kc, [crd])
        testing.kubectl(
            kc, "wait", "--for", "condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}"
        )
        testing.apply(kc, docs)
        self._wait_for_admission()
        return self

    def close(self) -> None:
        """Delete what install() created (newest first); namespaces without waiting."""
        gone = {name for kind, name, _ in self._made if kind == "Namespace"}
        for kind, name, ns in reversed(self._made):
            if ns in gone:
                continue  # goes with its namespace
            where = ["-n", ns] if ns else []
            wait = "--wait=false" if kind == "Namespace" else "--wait=true"
            testing.kubectl(
                self.kubeconfig, "delete", kind, name, *where, "--ignore-not-found", wait, check=False
            )
        self._made.clear()

    def _exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        where = ["-n", namespace] if namespace else []
        got = testing.kubectl(
            self.kubeconfig, "get", kind, name, *where, "--ignore-not-found", "-o", "name", check=False
        )
        return bool(got.stdout.strip())

    def _namespaces(self) -> list[dict[str, Any]]:
        mode = self.config.mode
        return [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": d.namespace, "labels": namespace_labels(d, priority_class_for(d, mode))},
            }
            for d in self.config.departments
        ]

    def _quotas(self) -> list[dict[str, Any]]:
        """The compute ResourceQuota the stack gives each department: the inference driver sums GPUs, CPU and
        memory of a department's endpoints against it (no count quota on requests: it would refuse most of
        the fuzz's requests before they reach the operator)."""
        return [
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "compute", "namespace": d.namespace},
                "spec": {"hard": quota_hard(d.quota_for(self.config.mode))},
            }
            for d in self.config.departments
        ]

    def _victims(self) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": VICTIM_SECRET, "namespace": ns},
                "stringData": dict(VICTIM_DATA),
            }
            for ns in self.namespaces
        ]

    def victims_intact(self, api: client.ApiClient) -> list[str]:
        """Departments whose victim Secret was changed or taken over (by an operator that should not have)."""
        core = client.CoreV1Api(api)
        broken = []
        for ns in self.namespaces:
            try:
                secret = core.read_namespaced_secret(VICTIM_SECRET, ns)
            except ApiException as e:
                broken.append(f"{ns}/{VICTIM_SECRET}: {e.status} {e.reason}")
                continue
            keys = sorted((secret.data or {}).keys())
            owners = secret.metadata.owner_references or []
            if keys != sorted(VICTIM_DATA) or owners:
                broken.append(f"{ns}/{VICTIM_SECRET}: keys {keys}, owners {[o.name for o in owners]}")
        return broken

    def _wait_for_admission(self) -> None:
        """Policies take effect asynchronously: wait until they refuse an offering not in the catalog and a
        share with a department not cleared for the data (yingji's important data to jiaotong)."""
        objects = client.CustomObjectsApi(testing.api(self.kubeconfig))
        probe = testing.channel("dept-yingji", "fuzz-probe", offering="no-such-offering")
        share = testing.channel("dept-yingji", "fuzz-probe", shareWith=[{"department": "dept-jiaotong"}])
        wanted = [
            (probe, "spec.offering: no-such-offering is not in the city catalog"),
            (share, "may not read"),
        ]
        last: list[str] = [""]

        def refused() -> bool:
            for doc, text in wanted:
                try:
                    objects.create_namespaced_custom_object(
                        GROUP, VERSION, "dept-yingji", "messagingchannels", copy.deepcopy(doc), dry_run="All"
                    )
                    last[0] = "admitted"
                    return False
                except ApiException as e:
                    last[0] = str(e.body)
                    if text not in last[0]:
                        return False
            return True

        try:
            testing.wait_for(refused, 60, "the admission policies to take effect", interval=0.5)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last answer: {last[0]}") from None


@contextmanager
def state_dir(directory: Path) -> Iterator[None]:
    """CITYHUB_STATE pointing at `directory` for the duration (the backends' launchers read it)."""
    old = os.environ.get("CITYHUB_STATE")
    os.environ["CITYHUB_STATE"] = str(directory)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CITYHUB_STATE", None)
        else:
            os.environ["CITYHUB_STATE"] = old


@dataclass
class OperatorUnderTest:
    """Every type's embedded backend and the operator serving them all, in `work`."""

    kubeconfig: Path
    work: Path
    backends: dict[str, LocalBackend] = field(default_factory=dict)
    operator: testing.OperatorProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    started: tuple[int, int] = (0, 0)
    """(pid, kernel start time) of the operator process when it came up."""

    @property
    def records(self) -> Supervisor:
        return Supervisor(self.work / "state" / "processes")

    def start(self) -> OperatorUnderTest:
        with state_dir(self.work / "state"):
            self.backends, failed = start_backends(self.records)
        missing = sorted(set(registry.component_types()) - set(self.backends))
        if failed or missing:
            self.close()
            raise RuntimeError(f"backends did not start: {', '.join(failed or missing)}")
        health = supervisor.free_port()
        self.env = {
            "CITYHUB_COMPONENTS": ",".join(sorted(self.backends)),
            "CITYHUB_LOG_FORMAT": "json",
            "CITYHUB_DRIFT_INTERVAL": "120",
            "CITYHUB_RETRY_BASE_DELAY": "0.5",
            "CITYHUB_RETRY_MAX_DELAY": "15",
            "CITYHUB_HEALTH_PORT": str(health),
        }
        for backend in self.backends.values():
            self.env.update(backend.operator_env)
        self.operator = testing.OperatorProcess(self.kubeconfig, self.env, self.work / "operator.log").start()
        assert self.operator.record is not None
        supervisor.wait_ready(
            self.operator.record,
            lambda: supervisor.http_ok(f"http://{supervisor.HOST}:{health}/healthz"),
            120,
        )
        self.started = (self.operator.pid, self.operator.record.start_time)
        return self

    def crashes(self) -> list[str]:
        """What went wrong with the operator or a backend process: exited, restarted (another process in its
        place), or a Python traceback in the operator's log."""
        out = []
        op = self.operator
        if op is None or op.record is None:
            return ["the operator never started"]
        if not op.alive():
            out.append(f"operator pid {self.started[0]} is gone; log {op.log}")
        elif (op.pid, op.record.start_time) != self.started:
            out.append(f"operator restarted: pid {self.started[0]} → {op.pid}")
        text = op.log.read_text(errors="replace") if op.log.exists() else ""
        if "Traceback" in text:
            out.append(f"operator log has {text.count('Traceback')} Traceback(s): {op.log}")
        for backend in self.backends.values():
            for rec in backend.processes:
                if not supervisor.is_running(rec):
                    out.append(f"backend process {rec.name} (pid {rec.pid}) exited; log {rec.log}")
        return out

    def close(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.records.stop_all()
