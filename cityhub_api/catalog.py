"""The city's unified component catalog (一本账): the ComponentOffering entries each component type ships in
its folder (component_types/<type>/catalog.yaml, one or more YAML documents), as the stack publishes them.

Before anything is declared, every entry is checked against schemas/catalog.schema.json (the same schema the
CRD is generated from) and against its component type: an offering must name a declared type, live in that
type's folder, and its plans may only bound that type's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cityhub_api import registry, schemas, units
from cityhub_api.api import API_VERSION, OFFERING_KIND
from cityhub_api.registry import ComponentType


class CatalogError(ValueError):
    """One or more catalog entries are wrong; the message names each file and field and what to change."""


@dataclass(frozen=True)
class Offering:
    name: str
    component_type: str
    spec: dict[str, Any]
    path: Path


def _where(path: Path, index: int, count: int) -> str:
    try:
        shown = path.relative_to(registry.DEFAULT_ROOT.parent)
    except ValueError:
        shown = path
    return f"{shown}" + (f" (document {index + 1})" if count > 1 else "")


def _documents(ctype: ComponentType, problems: list[str]) -> list[tuple[str, Any]]:
    path = ctype.catalog_file
    if not path.exists():
        return []
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as e:
        problems.append(f"{_where(path, 0, 1)}: not valid YAML ({e})")
        return []
    return [(_where(path, i, len(docs)), d) for i, d in enumerate(docs)]


def offering_names() -> set[str]:
    """The names of every offering the types ship (unvalidated: load_offerings checks them)."""
    names: set[str] = set()
    for ctype in registry.component_types().values():
        for _, doc in _documents(ctype, []):
            if isinstance(doc, dict) and isinstance((doc.get("metadata") or {}).get("name"), str):
                names.add(doc["metadata"]["name"])
    return names


def load_offerings(names: tuple[str, ...] = (), served: tuple[str, ...] = ()) -> list[Offering]:
    """The offerings to publish (`names`, or all the served types'), validated; raises CatalogError listing
    every problem.

    `served` (component types the operator serves; empty: all) guards against publishing an offering no one
    would ever provision: named offerings of other types are an error, and without names those are left out.
    """
    types = registry.component_types()
    spec_schema = schemas.catalog_document()["properties"]["spec"]
    problems: list[str] = []
    offerings: dict[str, Offering] = {}
    for ctype in types.values():
        for where, doc in _documents(ctype, problems):
            offering = _offering(ctype, where, doc, spec_schema, types, problems)
            if offering is None:
                continue
            if offering.name in offerings:
                other = offerings[offering.name].path
                problems.append(f"{where}: metadata.name {offering.name!r} is also used in {other}")
            offerings[offering.name] = offering
    unknown = [n for n in names if n not in offerings]
    if unknown:
        problems.append(
            f"cityhub:operator.catalog: no offering named {', '.join(unknown)}; offerings: "
            f"{', '.join(sorted(offerings)) or 'none'}"
        )
    for n in names:
        if n in offerings and served and offerings[n].component_type not in served:
            problems.append(
                f"{offerings[n].path}: spec.componentType {offerings[n].component_type!r} is not served by "
                "the operator; add it to cityhub:operator.components or leave this offering out of "
                "cityhub:operator.catalog"
            )
    if problems:
        raise CatalogError("invalid catalog:\n" + "\n".join(f"  - {p}" for p in problems))
    if names:
        return [offerings[n] for n in names]
    return [o for o in offerings.values() if not served or o.component_type in served]


def _offering(
    ctype: ComponentType,
    where: str,
    doc: Any,
    spec_schema: dict[str, Any],
    types: dict[str, ComponentType],
    problems: list[str],
) -> Offering | None:
    if not isinstance(doc, dict):
        problems.append(f"{where}: must be a ComponentOffering manifest (a mapping)")
        return None
    before = len(problems)
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != OFFERING_KIND:
        problems.append(f"{where}: apiVersion/kind must be {API_VERSION} {OFFERING_KIND}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: metadata.name is required")
    spec = doc.get("spec")
    for error in jsonschema.Draft202012Validator(spec_schema).iter_errors(spec):
        field = ".".join(str(p) for p in ("spec", *error.absolute_path))
        problems.append(f"{where}: {field}: {error.message}")
    if not isinstance(spec, dict) or len(problems) > before:
        return None
    if spec["componentType"] != ctype.name:
        problems.append(
            f"{where}: spec.componentType is {spec['componentType']!r}, but this file is in the folder of "
            f"{ctype.name}: move the entry to component_types/{spec['componentType']}/catalog.yaml"
        )
        return None
    problems += _semantic_problems(where, spec, types)
    if len(problems) > before:
        return None
    return Offering(str(name), ctype.name, spec, ctype.catalog_file)


def _semantic_problems(where: str, spec: dict[str, Any], types: dict[str, ComponentType]) -> list[str]:
    ctype = types.get(spec["componentType"])
    if ctype is None:
        return [
            f"{where}: spec.componentType: unknown type {spec['componentType']!r}; declared types "
            f"(component_types/): {', '.join(sorted(types))}"
        ]
    problems = []
    for i, plan in enumerate(spec["plans"]):
        for key in ("limits", "defaults"):
            for limit, value in (plan.get(key) or {}).items():
                at = f"{where}: spec.plans[{i}].{key}.{limit}"
                kind = ctype.limits.get(limit)
                if kind is None:
                    problems.append(
                        f"{at}: {ctype.name} has no limit {limit!r}; its limits: "
                        f"{', '.join(sorted(ctype.limits)) or 'none'}"
                    )
                    continue
                try:
                    units.parse(kind, value)
                except ValueError as e:
                    problems.append(f"{at}: {e}")
    return problems


def manifests(offerings: list[Offering]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": API_VERSION, "kind": OFFERING_KIND, "metadata": {"name": o.name}, "spec": o.spec}
        for o in offerings
    ]
