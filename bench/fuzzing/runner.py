"""Applying cases to the API server and following each to its end.

A batch of cases is created through the kubernetes client (create_namespaced_custom_object, in parallel).
A refusal is classified by the API server's Status: the CRD's schema (OpenAPI or CEL rule, by the causes'
reason), a ValidatingAdmissionPolicy (by name), or anything else (its HTTP code); it must name a field.
An admitted request is followed until its Ready condition is True, or False with a reason and a message for
its current generation (BackendUnavailable is a retry in progress, not an answer), or until the deadline;
then it is deleted and must go away. The Secrets of the batch's requests are checked on the way: none for a
request that is not Ready, and the department's own Secret (environment.VICTIM_SECRET) never taken over.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from cityhub_api import labels, registry
from cityhub_api.api import GROUP, VERSION
from fuzzing.seeds import RUN_LABEL, Case

RETRYING = "BackendUnavailable"
FIELD = re.compile(r"\b(spec|metadata)(\.|\[)|^namespace \S+ is not a department namespace")
"""A refusal names the field it refuses: `spec.…` or `metadata.…` in its message or a cause's field; the
namespace rule names the request's namespace (metadata.namespace) as `namespace <name>`."""
POLICY = re.compile(r"ValidatingAdmissionPolicy '([^']+)'.*?denied request: (.*)$", re.DOTALL)


@dataclass
class Refusal:
    status: int
    family: str
    message: str
    names_field: bool


@dataclass
class Outcome:
    case: Case
    refusal: Refusal | None = None
    uid: str = ""
    generation: int = 0
    update_refusal: Refusal | None = None
    update_admitted: bool = False
    ready: dict[str, Any] = field(default_factory=dict)
    """The last Ready condition seen (empty: none)."""
    settled: bool = False
    vanished: bool = False
    """Gone before it settled (the garbage collector deletes a request whose owner does not exist)."""
    gone: bool = False
    client_error: str = ""

    @property
    def admitted(self) -> bool:
        return self.refusal is None and not self.client_error

    @property
    def state(self) -> str:
        """refused, ready, unmet, retrying, vanished or no-conditions."""
        if not self.admitted:
            return "refused"
        if self.vanished and not self.ready:
            return "vanished"
        if not self.ready:
            return "no-conditions"
        if self.ready.get("status") == "True":
            return "ready"
        return "retrying" if self.ready.get("reason") == RETRYING else "unmet"

    @property
    def reason(self) -> str:
        return str(self.ready.get("reason", ""))


def refusal(e: ApiException) -> Refusal:
    try:
        status = json.loads(e.body or "{}")
    except ValueError:
        status = {}
    message = str(status.get("message") or e.reason or "")
    causes = [c for c in (status.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
    fields = [str(c.get("field", "")) for c in causes if c.get("field") and c.get("field") != "<nil>"]
    policy = POLICY.search(message)
    if policy:
        name, said = policy.group(1), policy.group(2)
        family = f"policy {name.removeprefix('cityhub-')}"
        names = bool(FIELD.search(said))
    elif fields:
        reasons = sorted({str(c.get("reason", "")) for c in causes if c.get("field") in fields})
        first = next(c for c in causes if c.get("field") in fields)
        source = "schema" if _openapi(str(first.get("message", ""))) else "CEL rule"
        if fields[0].startswith("metadata."):
            source = "metadata"
        family = f"{source} ({', '.join(reasons)})"
        names = True
    else:
        family = f"HTTP {e.status} {status.get('reason', e.reason)}"
        names = bool(FIELD.search(message))
    return Refusal(int(e.status or 0), family, message, names)


_OPENAPI = ("in body", "Unsupported value:", "Duplicate value:", "must have at most", "Too long", "Too many")


def _openapi(message: str) -> bool:
    """An OpenAPI schema message (the CEL rules' messages are the rules' own sentences)."""
    return any(s in message for s in _OPENAPI) or message.strip() == "Required value"


class Runner:
    """Runs batches of cases against one API server; `outcomes` keeps every case's end."""

    def __init__(
        self,
        api: client.ApiClient,
        run: str,
        *,
        workers: int,
        wait: float,
        quiet: float,
        delete_wait: float = 120,
        log: Callable[[str], None],
    ) -> None:
        self.api, self.run, self.quiet, self.delete_wait = api, run, quiet, delete_wait
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.workers, self.wait, self.log = workers, wait, log
        self.outcomes: list[Outcome] = []
        self.secret_problems: list[str] = []
        self.stuck: list[Outcome] = []

    # -- one batch ----------------------------------------------------------------------------------

    def batch(self, cases: Sequence[Case]) -> list[Outcome]:
        with ThreadPoolExecutor(self.workers) as pool:
            outcomes = list(pool.map(self._create, cases))
        admitted = [o for o in outcomes if o.admitted]
        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(self._update, [o for o in admitted if o.case.update is not None]))
        self._follow(admitted)
        self._check_secrets(admitted)
        self._delete(admitted)
        self.outcomes += outcomes
        return outcomes

    def _create(self, case: Case) -> Outcome:
        out = Outcome(case)
        try:
            made = self.objects.create_namespaced_custom_object(
                GROUP, VERSION, case.namespace, case.plural, case.body
            )
        except ApiException as e:
            out.refusal = refusal(e)
            return out
        except (HTTPError, ValueError, TypeError) as e:  # never reached the server, or no answer
            out.client_error = f"{type(e).__name__}: {e}"[:500]
            return out
        out.uid = made["metadata"]["uid"]
        out.generation = int(made["metadata"].get("generation") or 1)
        return out

    def _update(self, out: Outcome) -> None:
        case = out.case
        try:
            made = self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, case.namespace, case.plural, case.name, case.update
            )
        except ApiException as e:
            out.update_refusal = refusal(e)
            return
        out.update_admitted = True
        out.generation = int(made["metadata"].get("generation") or out.generation)

    def _listed(self) -> dict[str, dict[str, Any]]:
        """The run's requests by uid (one list per kind)."""
        found: dict[str, dict[str, Any]] = {}
        for plural in sorted(t.plural for t in registry.component_types().values()):
            items = self.objects.list_cluster_custom_object(
                GROUP, VERSION, plural, label_selector=f"{RUN_LABEL}={self.run}"
            )
            for item in items.get("items", []):
                found[item["metadata"]["uid"]] = item
        return found

    def _follow(self, admitted: list[Outcome]) -> None:
        """Until every request has answered, or `wait` seconds, or `quiet` seconds without a new answer."""
        deadline = time.monotonic() + self.wait
        waiting = {o.uid: o for o in admitted}
        last_answer = time.monotonic()
        while waiting:
            before = len(waiting)
            listed = self._listed()
            for uid, out in list(waiting.items()):
                obj = listed.get(uid)
                if obj is None:
                    out.vanished = True
                    del waiting[uid]
                    continue
                out.ready = _condition(obj, "Ready")
                out.generation = int(obj["metadata"].get("generation") or out.generation)
                if _answered(out.ready, out.generation):
                    out.settled = True
                    del waiting[uid]
            now = time.monotonic()
            if len(waiting) < before:
                last_answer = now
            if not waiting or now > deadline or now - last_answer > self.quiet:
                break
            time.sleep(1.0)

    def _check_secrets(self, admitted: list[Outcome]) -> None:
        """A request that is not Ready has no Secret; a Secret is only ever owned by its own request."""
        by_uid = {o.uid: o for o in admitted}
        namespaces = sorted({o.case.namespace for o in admitted})
        for ns in namespaces:
            secrets = self.core.list_namespaced_secret(ns, label_selector=labels.COMPONENT_TYPE).items
            for secret in secrets:
                owners = [r.uid for r in secret.metadata.owner_references or []]
                for uid in owners:
                    out = by_uid.get(uid)
                    if out is not None and out.state not in ("ready", "retrying"):
                        self.secret_problems.append(
                            f"{ns}/{secret.metadata.name}: Secret of {out.case.name}, which is {out.state} "
                            f"({out.reason})"
                        )

    def _delete(self, admitted: list[Outcome]) -> None:
        live = [o for o in admitted if not o.vanished]

        def delete(out: Outcome) -> None:
            try:
                self.objects.delete_namespaced_custom_object(
                    GROUP, VERSION, out.case.namespace, out.case.plural, out.case.name
                )
            except ApiException as e:
                if e.status != 404:
                    self.log(f"delete {out.case.namespace}/{out.case.name}: {e.status} {e.reason}")

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(delete, live))
        deadline = time.monotonic() + self.delete_wait
        waiting = {o.uid: o for o in live}
        while waiting:
            listed = self._listed()
            for uid in list(waiting):
                if uid not in listed:
                    waiting.pop(uid).gone = True
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for out in admitted:
            out.gone = out.gone or out.vanished
        self.stuck += list(waiting.values())


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def _answered(ready: dict[str, Any], generation: int) -> bool:
    if not ready:
        return False
    observed = ready.get("observedGeneration")
    if observed is not None and int(observed) < generation:
        return False
    if ready.get("status") == "True":
        return True
    return bool(ready.get("status") == "False" and ready.get("reason") and ready.get("message")) and (
        ready.get("reason") != RETRYING
    )
