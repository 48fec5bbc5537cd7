"""Docs generated from the registry and the schemas, so they cannot disagree with the CRDs:

    python -m cityhub_api.apidocs > docs/api-reference.md      the API reference (every field of every kind)
    python -m cityhub_api.apidocs --write-tables               the component tables in README.md and
                                                                docs/api.md (between their markers)

tests/unit/test_apidocs.py fails when a committed file is out of date.
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


TABLE_BEGIN = "<!-- component table (python -m cityhub_api.apidocs --write-tables): begin -->"
TABLE_END = "<!-- component table: end -->"
TABLE_FILES = ("README.md", "docs/api.md")


def component_table(base: str = "") -> str:
    """One row per component type: display name, request kind (short name), backend, docs page.

    `base` is the path from the document to the repository root (e.g. "../" for docs/)."""
    rows = [
        "| component | request kind | backend | docs |",
        "| --- | --- | --- | --- |",
    ]
    for ctype in registry.component_types().values():
        short = f" (`{ctype.short_names[0]}`)" if ctype.short_names else ""
        try:
            page = ctype.docs_page.relative_to(registry.DEFAULT_ROOT.parent).as_posix()
        except ValueError:
            page = ctype.docs_page.as_posix()
        rows.append(
            f"| {_cell(ctype.display_name)} | `{ctype.kind}`{short} | {_cell(ctype.backend_summary)} | "
            f"[{ctype.name}]({base}{page}) |"
        )
    return "\n".join(rows) + "\n"


def with_table(text: str, base: str) -> str:
    """`text` with the block between the table markers replaced by the current table."""
    begin, end = text.index(TABLE_BEGIN), text.index(TABLE_END)
    return text[: begin + len(TABLE_BEGIN)] + "\n" + component_table(base) + text[end:]


def _base(relative: str) -> str:
    return "../" * relative.count("/")


def main(argv: list[str]) -> int:
    if argv == ["--write-tables"]:
        root = registry.DEFAULT_ROOT.parent
        for relative in TABLE_FILES:
            path = root / relative
            path.write_text(with_table(path.read_text(encoding="utf-8"), _base(relative)), encoding="utf-8")
        return 0
    if argv:
        print("usage: python -m cityhub_api.apidocs [--write-tables]", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
