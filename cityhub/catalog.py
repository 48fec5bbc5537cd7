"""The city's unified component catalog (一本账) as the stack publishes it: stacks/catalog/<offering>.yaml.

Each file is one ComponentOffering manifest. Before anything is declared, every file is checked against
schemas/catalog.schema.json (the same schema the CRD is generated from) and against the component types in
schemas/components: an offering must name a declared type, and its plans may only bound that type's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from cityhub_operator import schemas, units
from cityhub_operator.schemas import API_VERSION, ComponentType

from cityhub.paths import repo_root


class CatalogError(ValueError):
    """One or more catalog files are wrong; the message names each file and field and what to change."""


@dataclass(frozen=True)
class Offering:
    name: str
    component_type: str
    spec: dict[str, Any]
    path: Path


def catalog_dir() -> Path:
    return repo_root() / "stacks" / "catalog"


def component_types() -> dict[str, ComponentType]:
    return schemas.component_types()


def offering_files() -> dict[str, Path]:
    """Offering name (the file's stem) → file."""
    return {p.stem: p for p in sorted(catalog_dir().glob("*.yaml"))}


def load_offerings(names: tuple[str, ...] = (), served: tuple[str, ...] = ()) -> list[Offering]:
    """The offerings to publish (all files, or `names`), validated; raises CatalogError listing every problem.

    `served` (component types the operator serves; empty: all) guards against publishing an offering no one
    would ever provision.
    """
    files = offering_files()
    types = component_types()
    spec_schema = schemas.catalog_document()["properties"]["spec"]
    problems: list[str] = []
    offerings: list[Offering] = []
    for name in names or tuple(files):
        path = files[name]
        where = f"stacks/catalog/{path.name}"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            problems.append(f"{where}: not valid YAML ({e})")
            continue
        if not isinstance(doc, dict):
            problems.append(f"{where}: must be one ComponentOffering manifest (a mapping)")
            continue
        if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "ComponentOffering":
            problems.append(f"{where}: apiVersion/kind must be {API_VERSION} ComponentOffering")
        if (doc.get("metadata") or {}).get("name") != name:
            problems.append(f"{where}: metadata.name must be {name!r}, the file's name")
        spec = doc.get("spec")
        for error in jsonschema.Draft202012Validator(spec_schema).iter_errors(spec):
            field = ".".join(str(p) for p in ("spec", *error.absolute_path))
            problems.append(f"{where}: {field}: {error.message}")
        if not isinstance(spec, dict) or problems:
            continue
        problems += _semantic_problems(where, spec, types, served)
        offerings.append(Offering(name, spec["componentType"], spec, path))
    if problems:
        raise CatalogError("invalid catalog:\n" + "\n".join(f"  - {p}" for p in problems))
    return offerings


def _semantic_problems(
    where: str, spec: dict[str, Any], types: dict[str, ComponentType], served: tuple[str, ...]
) -> list[str]:
    ctype = types.get(spec["componentType"])
    if ctype is None:
        return [
            f"{where}: spec.componentType: unknown type {spec['componentType']!r}; declared types "
            f"(schemas/components): {', '.join(sorted(types))}"
        ]
    if served and ctype.name not in served:
        return [
            f"{where}: spec.componentType {ctype.name!r} is not served by the operator; add it to "
            "cityhub:operator.components or leave this offering out of cityhub:operator.catalog"
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
        {"apiVersion": API_VERSION, "kind": "ComponentOffering", "metadata": {"name": o.name}, "spec": o.spec}
        for o in offerings
    ]
