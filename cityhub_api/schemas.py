"""The shared JSON Schemas in schemas/ and the composed schema of a request. Each type's own schema lives in
its folder (registry.py); this module composes it with the common request envelope.

    schemas/catalog.schema.json                 ComponentOffering (cluster-scoped catalog entry)
    schemas/feedback.schema.json                ComponentFeedback (a department's rating of a component)
    schemas/request.schema.json                 what every request has: spec.offering/plan/…, status
    schemas/hub-config.schema.json              the stack configuration (cityhub:*), composed with the types
    schemas/price-sheet.schema.json             the city's prices for the report's cost showback (成本分摊)
    component_types/<type>/schema.json          one type's spec parameters (registry.py)
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from cityhub_api import registry
from cityhub_api.registry import ComponentType, SchemaError
from cityhub_api.settings import Env

__all__ = ["SchemaError", "catalog_document", "feedback_document", "request_schema", "schemas_dir"]


def schemas_dir() -> Path:
    """CITYHUB_SCHEMAS_DIR (an installed image), else the checkout's schemas/."""
    return Env().path("CITYHUB_SCHEMAS_DIR", Path(__file__).resolve().parent.parent / "schemas")


@cache
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SchemaError(f"{path}: missing") from e


def load(name: str) -> dict[str, Any]:
    """schemas/<name> as written (a fresh copy)."""
    path = schemas_dir() / name
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not valid JSON ({e})") from e


def catalog_document() -> dict[str, Any]:
    """schemas/catalog.schema.json as written (with x-cityhub)."""
    return load("catalog.schema.json")


def feedback_document() -> dict[str, Any]:
    return load("feedback.schema.json")


def request_schema(ctype: ComponentType) -> dict[str, Any]:
    """The JSON Schema of a whole request of this type: the common envelope with the type's spec merged in."""
    common = load("request.schema.json")
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


def hub_config_schema() -> dict[str, Any]:
    """schemas/hub-config.schema.json composed with the component types: the names `cityhub:backends.deploy`
    and `cityhub:sharedServices[].name` accept, and each type's own `cityhub:backends.<type>` settings."""
    doc = load("hub-config.schema.json")
    types = registry.component_types()
    names = list(types)
    hint = f"must be one of {', '.join(names)}"
    backends = doc["properties"]["backends"]
    backends["properties"]["deploy"]["items"].update({"enum": names, "x-hint": hint})
    for name, ctype in types.items():
        if ctype.backend_settings:
            if name in backends["properties"]:
                raise SchemaError(f"{ctype.folder}: cityhub:backends.{name} is already a key of its own")
            backends["properties"][name] = copy.deepcopy(ctype.backend_settings)
    backends["x-hint"] = f"takes only {', '.join(sorted(backends['properties']))}"
    service = doc["properties"]["sharedServices"]["items"]["properties"]["name"]
    service.update({"enum": names, "x-hint": hint})
    return doc
