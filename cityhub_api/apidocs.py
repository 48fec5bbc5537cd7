"""The API reference, generated from the same JSON Schemas as the CRDs (so the two cannot disagree).

    python -m cityhub_api.apidocs > docs/api-reference.md

tests/unit/test_apidocs.py fails when the committed file is out of date.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from cityhub_api import crds, registry, schemas
from cityhub_api.api import API_VERSION, CATEGORY


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict[str, Any], path: str, required: set[str]) -> Iterator[str]:
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}" if path else name
        notes = []
        if name in required:
            notes.append("required")
        if "default" in child:
            notes.append(f"default `{child['default']}`")
        for rule in child.get("x-kubernetes-validations", []):
            notes.append(f"rule: {rule['message']}")
        yield (
            f"| `{field}` | {_type(child)} | {_cell(child.get('description', ''))} | "
            f"{_cell('; '.join(notes))} |"
        )
        target = child.get("items", child) if child.get("type") == "array" else child
        yield from _rows(target, field, set(target.get("required", [])))


def _section(title: str, crd: dict[str, Any], schema: dict[str, Any], intro: str) -> list[str]:
    names = crd["spec"]["names"]
    scope = crd["spec"]["scope"]
    lines = [
        f"## {title}",
        "",
        intro,
        "",
        f"- `apiVersion: {API_VERSION}`, `kind: {names['kind']}`, {scope.lower()}",
        f"- `kubectl get {names['plural']}`"
        + (f" (short names: {', '.join(f'`{s}`' for s in names.get('shortNames', []))})")
        + (f"; categories: {', '.join(f'`{c}`' for c in names.get('categories', []))}"),
        f"- `kubectl explain {names['plural']}.spec` shows the same descriptions.",
        "",
    ]
    rules = schema["properties"]["spec"].get("x-kubernetes-validations", [])
    if rules:
        lines += ["Admission rules on the whole spec:", ""]
        lines += [f"- {r['message']}" for r in rules]
        lines.append("")
    lines += ["| Field | Type | Description | Notes |", "|---|---|---|---|"]
    spec = schema["properties"]["spec"]
    lines += list(_rows(spec, "spec", set(spec.get("required", []))))
    status = schema["properties"].get("status")
    if status:
        lines += list(_rows(status, "status", set()))
    lines.append("")
    return lines


def render() -> str:
    by_kind = {c["spec"]["names"]["kind"]: c for c in crds.render_crds()}
    lines = [
        "# API reference (generated)",
        "",
        "<!-- python -m cityhub_api.apidocs > docs/api-reference.md — do not edit by hand -->",
        "",
        f"API group `{API_VERSION}`. `kubectl get {CATEGORY} -n <department>` lists every component a "
        "department requested. Concepts and examples: [api.md](api.md).",
        "",
    ]
    catalog = schemas.catalog_document()
    lines += _section(
        "ComponentOffering (catalog)",
        by_kind["ComponentOffering"],
        catalog,
        _cell(catalog.get("description", "")),
    )
    for _, ctype in sorted(registry.component_types().items()):
        lines += _section(
            f"{ctype.kind} ({ctype.name})",
            by_kind[ctype.kind],
            schemas.request_schema(ctype),
            _cell(ctype.schema.get("description", "")),
        )
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
