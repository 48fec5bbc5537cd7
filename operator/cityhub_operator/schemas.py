"""The JSON Schemas in schemas/ are the single source of the API: this module finds and composes them.

    schemas/catalog.schema.json                 ComponentOffering (cluster-scoped catalog entry)
    schemas/components/request.schema.json      what every request has: spec.offering/plan/…, status
    schemas/components/<type>.schema.json       one component type: its spec parameters and, under
                                                `x-cityhub`, its kind, names, driver and limit names

A new component type is literally one schema file here, one driver module and one catalog entry.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUP = "hub.cityhub.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "cityhub"
"""`kubectl get cityhub -n <department>` lists every component a department requested."""

LIMIT_KINDS = ("duration", "quantity", "integer")
COMMON_SCHEMA = "request.schema.json"


class SchemaError(ValueError):
    """A schema file is missing or inconsistent; the message names the file and the field."""


def schemas_dir() -> Path:
    """CITYHUB_SCHEMAS_DIR, else the checkout's schemas/ (two levels above this package)."""
    given = os.environ.get("CITYHUB_SCHEMAS_DIR")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True)
class ComponentType:
    """One component type, as declared by schemas/components/<name>.schema.json."""

    name: str
    """The type's name (the file's stem), e.g. messaging; ComponentOffering.spec.componentType names it."""
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    driver: str
    """Dotted module path of the driver; imported by name, so the core never imports a driver."""
    limits: dict[str, str]
    """Limit name → kind (duration, quantity, integer); spec.limits.<name> is checked against the plan."""
    display_name: str
    printer_columns: tuple[dict[str, Any], ...]
    schema: dict[str, Any]
    """The type's own schema: spec parameters (without x-cityhub)."""


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SchemaError(f"{path}: missing") from e
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e})") from e


def _component_type(path: Path) -> ComponentType:
    doc = _load(path)
    meta = doc.get("x-cityhub")
    if not isinstance(meta, dict):
        raise SchemaError(f"{path}: needs an x-cityhub object (kind, plural, driver, …)")
    missing = [k for k in ("componentType", "kind", "plural", "singular", "driver") if not meta.get(k)]
    if missing:
        raise SchemaError(f"{path}: x-cityhub needs {', '.join(missing)}")
    if meta["componentType"] != path.name.removesuffix(".schema.json"):
        raise SchemaError(f"{path}: x-cityhub.componentType must equal the file's stem")
    limits = dict(meta.get("limits", {}))
    for name, kind in limits.items():
        if kind not in LIMIT_KINDS:
            raise SchemaError(f"{path}: x-cityhub.limits.{name} is {kind!r}; must be one of {LIMIT_KINDS}")
        if name not in doc.get("properties", {}).get("limits", {}).get("properties", {}):
            raise SchemaError(f"{path}: x-cityhub.limits.{name} has no spec property limits.{name}")
    schema = {k: v for k, v in doc.items() if k != "x-cityhub"}
    return ComponentType(
        name=meta["componentType"],
        kind=meta["kind"],
        plural=meta["plural"],
        singular=meta["singular"],
        short_names=tuple(meta.get("shortNames", ())),
        driver=meta["driver"],
        limits=limits,
        display_name=meta.get("displayName", meta["kind"]),
        printer_columns=tuple(meta.get("printerColumns", ())),
        schema=schema,
    )


def _component_types(directory: Path) -> dict[str, ComponentType]:
    files = sorted((directory / "components").glob("*.schema.json"))
    types = [_component_type(p) for p in files if p.name != COMMON_SCHEMA]
    by_name = {t.name: t for t in types}
    for attr in ("kind", "plural"):
        values = [getattr(t, attr) for t in types]
        dupes = {v for v in values if values.count(v) > 1}
        if dupes:
            raise SchemaError(f"{directory}/components: {attr} used by more than one type: {sorted(dupes)}")
    return by_name


def component_types() -> dict[str, ComponentType]:
    """Every component type declared in schemas/components, by type name."""
    return _component_types(schemas_dir())


def component_type_by_kind(kind: str) -> ComponentType:
    for t in component_types().values():
        if t.kind == kind:
            return t
    raise KeyError(kind)


def catalog_document() -> dict[str, Any]:
    """schemas/catalog.schema.json as written (with x-cityhub)."""
    return copy.deepcopy(_load(schemas_dir() / "catalog.schema.json"))


def request_schema(ctype: ComponentType) -> dict[str, Any]:
    """The JSON Schema of a whole request of this type: the common envelope with the type's spec merged in."""
    common = _load(schemas_dir() / "components" / COMMON_SCHEMA)
    out = {k: v for k, v in common.items() if k not in ("$id", "title")}
    out["title"] = ctype.kind
    out["description"] = ctype.schema.get("description", common.get("description", ""))
    spec = out["properties"]["spec"]
    own = ctype.schema
    clash = set(spec["properties"]) & set(own.get("properties", {}))
    if clash:
        raise SchemaError(
            f"{ctype.name}: spec properties {sorted(clash)} clash with the common request envelope"
        )
    spec["properties"].update(copy.deepcopy(own.get("properties", {})))
    spec["required"] = sorted(set(spec.get("required", [])) | set(own.get("required", [])))
    rules = spec.get("x-kubernetes-validations", []) + own.get("x-kubernetes-validations", [])
    if rules:
        spec["x-kubernetes-validations"] = copy.deepcopy(rules)
    out["required"] = ["spec"]
    return out
