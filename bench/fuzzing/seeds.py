"""What the fuzzer mutates: valid requests (the docs' examples, and each type's example completed with every
optional field), the fields of each kind's CRD schema, and a case's shape.

    seeds()          Seed per example request (component_types/<type>/examples/, docs/examples/) plus one
                     `complete` seed per kind: every optional spec field set to a valid value, so a
                     mutation of any field of the schema happens in an otherwise valid request
    fields(kind)     every node of the kind's spec schema (the CRD's openAPIV3Schema), with its path
    Case             one request to create (and optionally a merge patch to send once it is admitted)
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths
from cityhub_api import crds, registry
from cityhub_api.api import GROUP, VERSION
from cityhub_api.catalog import load_offerings

ROOT = paths.repo_root()
RUN_LABEL = "fuzz.cityhub.io/run"
"""Every request the fuzzer creates carries it (value: the run's id), so one list finds a run's requests."""
GRADE_LABEL = "cityhub.io/data-grade"
FieldPath = tuple[str | int, ...]

# Valid values for every optional spec field, by kind; `offering` comes from the catalog. `@share` is replaced
# by another department when the case is placed (a department does not share with itself).
COMPLETE: dict[str, dict[str, Any]] = {
    "MessagingChannel": {
        "plan": "standard",
        "deletionPolicy": "Delete",
        "limits": {"maxAge": "1d", "maxBytes": "64Mi", "maxMessages": 1000},
        "storage": "file",
        "shareWith": [{"department": "@share", "purpose": "联动处置"}],
    },
    "IdentityClient": {
        "plan": "standard",
        "type": "confidential",
        "redirectUris": ["https://app.city.gov.cn/callback"],
        "scopes": ["email"],
        "roles": ["viewer"],
        "limits": {"accessTokenLifespan": "5m", "sessionMaxLifespan": "10h"},
    },
    "MapLayer": {
        "plan": "standard",
        "geometryType": "Point",
        "coordinateSystem": "EPSG:4490",
        "attributes": [{"name": "label", "type": "text"}, {"name": "capacity", "type": "integer"}],
        "visibility": "Shared",
        "shareWith": [{"department": "@share", "purpose": "疏散路线规划"}],
        "minZoom": 0,
        "maxZoom": 22,
        "dataDeletion": "Drop",
    },
    "InferenceEndpoint": {
        "plan": "cpu-small",
        "model": "traffic-flow",
        "modelVersion": "1",
        "modelUri": "traffic-flow/1/model.joblib",
        "replicas": 1,
        "limits": {"requestsPerMinute": 120, "memory": "512Mi"},
    },
    "SensorFleet": {
        "plan": "standard",
        "devices": ["gauge-001", "gauge-002"],
        "limits": {
            "maxDevices": 10,
            "maxMessageBytes": "1Ki",
            "messagesPerSecond": 1,
            "maxAge": "1d",
            "maxBytes": "64Mi",
        },
    },
}
SECRET_SUFFIX = "-s"
"""A complete seed names its Secret `<name>-s` (secretName is a field to fuzz, and unique per request)."""


@dataclass(frozen=True)
class Seed:
    kind: str
    source: str
    """Where it comes from: an example file (relative to the checkout) or `complete`."""
    body: dict[str, Any]
    """apiVersion, kind, metadata (name, labels) and spec; no namespace (a case places it)."""

    @property
    def plural(self) -> str:
        return registry.component_type_by_kind(self.kind).plural


@dataclass
class Case:
    number: int
    family: str
    """The kind of attack, e.g. wrong-type, path-trick, hypothesis (the table's rows)."""
    detail: str
    """What was done, e.g. `spec.limits.maxAge ← 12 (integer)`."""
    body: dict[str, Any]
    update: dict[str, Any] | None = None
    """A JSON merge patch sent after the request is admitted (immutable fields, hostile updates)."""
    update_detail: str = ""
    expect_ready: bool = False
    """A valid request (controls, colliding names): it must become Ready."""
    group: int = -1
    """Cases that must exist at once (a colliding pair, a flood of shares): the number of the group's first
    case; -1: none."""

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def plural(self) -> str:
        return registry.component_type_by_kind(self.kind).plural

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}


@dataclass(frozen=True)
class SchemaField:
    path: FieldPath
    """From the object's root, e.g. ("spec", "limits", "maxAge") or ("spec", "shareWith", 0, "department")."""
    schema: dict[str, Any]
    required: bool = False
    """Listed in its parent's `required`."""

    @property
    def shown(self) -> str:
        return shown(self.path)

    @property
    def type(self) -> str:
        if self.schema.get("x-kubernetes-int-or-string"):
            return "int-or-string"
        return str(self.schema.get("type", ""))


def shown(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def request_kinds() -> list[str]:
    return [t.kind for _, t in sorted(registry.component_types().items())]


@cache
def offering_of(kind: str) -> str:
    ctype = registry.component_type_by_kind(kind).name
    return next(o.name for o in load_offerings() if o.component_type == ctype)


@cache
def plans_of(kind: str) -> dict[str, dict[str, Any]]:
    """Plan name -> plan (limits, defaults) of the kind's offering."""
    ctype = registry.component_type_by_kind(kind).name
    offering = next(o for o in load_offerings() if o.component_type == ctype)
    return {p["name"]: p for p in offering.spec.get("plans", [])}


def example_files() -> list[Path]:
    found = [f for t in registry.component_types().values() for f in (t.folder / "examples").glob("*.yaml")]
    docs = ROOT / "docs" / "examples"
    return sorted([*found, *docs.glob("jiaotong/*.yaml"), docs / "messaging-channel.yaml"])


@cache
def seeds() -> tuple[Seed, ...]:
    kinds = set(request_kinds())
    out = []
    for file in example_files():
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if doc and doc.get("kind") in kinds and str(doc.get("apiVersion", "")).startswith(GROUP):
                body = copy.deepcopy(doc)
                body["metadata"].pop("namespace", None)
                out.append(Seed(doc["kind"], str(file.relative_to(ROOT)), body))
    for kind in request_kinds():
        out.append(Seed(kind, "complete", complete(kind)))
    return tuple(out)


def complete(kind: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "complete", "labels": {GRADE_LABEL: "general"}},
        "spec": {"offering": offering_of(kind), **copy.deepcopy(COMPLETE[kind]), "secretName": "@secret"},
    }


@cache
def spec_schema(kind: str) -> dict[str, Any]:
    """The kind's spec as the API server validates it: the CRD's openAPIV3Schema (cityhub_api.crds)."""
    crd = crds.request_crd(registry.component_type_by_kind(kind))
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(root["properties"]["spec"])


@cache
def fields(kind: str) -> tuple[SchemaField, ...]:
    """Every node under spec (objects, arrays, their items and leaves), depth first, spec itself first."""
    return tuple(_walk(spec_schema(kind), ("spec",), True))


def _walk(node: dict[str, Any], path: FieldPath, required: bool) -> Iterator[SchemaField]:
    yield SchemaField(path, node, required)
    wanted = set(node.get("required", []))
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, (*path, name), name in wanted)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield from _walk(node["items"], (*path, 0), False)


def strings(kind: str) -> list[SchemaField]:
    """Every field that takes a string (int-or-string ones too), plus metadata the request carries."""
    out = [f for f in fields(kind) if f.type in ("string", "int-or-string")]
    meta = [
        SchemaField(("metadata", "name"), {"type": "string"}),
        SchemaField(("metadata", "labels", GRADE_LABEL), {"type": "string"}),
        SchemaField(("metadata", "annotations", "note"), {"type": "string"}),
    ]
    return out + meta


# -- reading and writing a path in a request ----------------------------------------------------------------

MISSING = object()


def get(obj: Any, path: FieldPath) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or len(obj) <= part:
                return MISSING
        elif not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return obj


def put(obj: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Set `path` to `value`, making the objects and lists on the way (a list gets empty items up to the
    index)."""
    node: Any = obj
    for part, nxt in itertools.pairwise(path):
        blank: Any = [] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            if not isinstance(node, list):
                return
            while len(node) <= part:
                node.append(copy.deepcopy(blank))
            if not isinstance(node[part], dict | list):
                node[part] = blank
        else:
            if not isinstance(node.get(part), dict | list):
                node[part] = blank
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if isinstance(node, list):
            while len(node) <= last:
                node.append(None)
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value


def drop(obj: dict[str, Any], path: FieldPath) -> bool:
    parent = get(obj, path[:-1])
    last = path[-1]
    if isinstance(last, int) and isinstance(parent, list) and len(parent) > last:
        del parent[last]
        return True
    if isinstance(last, str) and isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    return False


# -- placing a seed in a department ------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    namespace: str
    name: str
    share_with: str
    """Another department, cleared for general data: where `@share` points."""
    run: str
    labels: dict[str, str] = field(default_factory=dict)


def place(seed: Seed, where: Placement) -> dict[str, Any]:
    """The seed as a request of `where.namespace` named `where.name`, with the run's label."""
    body = copy.deepcopy(seed.body)
    meta = body.setdefault("metadata", {})
    meta["name"] = where.name
    meta["namespace"] = where.namespace
    meta["labels"] = {**(meta.get("labels") or {}), RUN_LABEL: where.run, **where.labels}
    spec = body.get("spec") or {}
    for item in spec.get("shareWith") or []:
        if item.get("department") in ("@share", where.namespace):
            item["department"] = where.share_with
    if spec.get("secretName") == "@secret":
        spec["secretName"] = where.name + SECRET_SUFFIX
    return body
