"""CustomResourceDefinitions generated from the JSON Schemas in schemas/ (the single source).

    python -m cityhub_api.crds                print the component API's CRDs as a multi-document YAML stream
    python -m cityhub_api.crds --json     the same as a JSON list

`install_set()` is what the stack installs: one cluster-scoped catalog kind (ComponentOffering), one
namespaced request kind per component type (`render_crds()`, API group hub.cityhub.io, category `cityhub`),
and the departments' ComponentFeedback.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

import yaml

from cityhub_api import labels, registry, schemas
from cityhub_api.api import CATEGORY, GROUP, VERSION
from cityhub_api.registry import ComponentType, SchemaError

# JSON Schema keywords a CRD's structural schema does not accept; they are dropped on the way.
_INT_OR_STRING_MESSAGE = "x-cityhub-int-or-string-message"
_DROP = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "examples",
        "const",
        "deprecated",
        "x-cityhub",
        _INT_OR_STRING_MESSAGE,
    }
)

_EXCLUSIVE = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}

REQUEST_COLUMNS_BEFORE = (
    {"name": "Offering", "type": "string", "jsonPath": ".spec.offering", "description": "Catalog offering"},
    {"name": "Plan", "type": "string", "jsonPath": ".status.plan", "description": "Plan in effect"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The backend objects exist and work",
    },
    {
        "name": "Synced",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Synced")].status',
        "description": "The latest spec was applied",
    },
)
REQUEST_COLUMNS_AFTER = (
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why Ready is what it is",
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def to_structural(node: Any, path: str = "") -> Any:
    """A JSON Schema (draft 2020-12 subset) as a Kubernetes structural openAPIV3Schema.

    Drops keywords Kubernetes rejects ($schema, $id, examples, …) and `additionalProperties: false`
    (the API server prunes unknown fields anyway); rejects `$ref` so a schema stays self-contained.
    """
    if isinstance(node, list):
        return [to_structural(n, f"{path}[{i}]") for i, n in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        raise SchemaError(f"{path or '/'}: $ref is not supported in CRD schemas; inline it")
    if node.get("x-kubernetes-int-or-string") and "anyOf" in node:
        node = _int_or_string_as_cel(node, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and value is False):
            continue
        if key in _EXCLUSIVE and not isinstance(value, bool):
            # Draft 2020-12 writes `exclusiveMinimum: 0`; OpenAPI v3.0 (CRDs) wants minimum + a boolean.
            out[_EXCLUSIVE[key]] = value
            out[key] = True
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_structural(v, f"{path}.{k}") for k, v in value.items()}
        else:
            out[key] = to_structural(value, f"{path}.{key}")
    return out


def _int_or_string_as_cel(node: dict[str, Any], path: str) -> dict[str, Any]:
    """An int-or-string `anyOf` as one CEL rule: structural schemas forbid `type` inside anyOf."""
    checks: dict[str, str] = {}
    for branch in node["anyOf"]:
        kind = branch.get("type")
        parts = []
        if kind == "integer":
            if "minimum" in branch:
                parts.append(f"self >= {int(branch['minimum'])}")
            if "maximum" in branch:
                parts.append(f"self <= {int(branch['maximum'])}")
        elif kind == "string":
            if "pattern" in branch:
                parts.append("self.matches(" + json.dumps(branch["pattern"]) + ")")
            if "maxLength" in branch:
                parts.append(f"self.size() <= {int(branch['maxLength'])}")
        else:
            raise SchemaError(f"{path}: int-or-string anyOf branches must be integer or string")
        checks[kind] = " && ".join(parts) or "true"
    rule = f"type(self) == int ? ({checks.get('integer', 'false')}) : ({checks.get('string', 'false')})"
    message = node.get(_INT_OR_STRING_MESSAGE, f"{path.lstrip('.')} must be an integer or a string")
    out = {k: v for k, v in node.items() if k not in ("anyOf", _INT_OR_STRING_MESSAGE)}
    out["x-kubernetes-validations"] = [
        *node.get("x-kubernetes-validations", []),
        {"rule": rule, "message": message},
    ]
    return out


def _root(schema: dict[str, Any]) -> dict[str, Any]:
    body = to_structural(schema)
    body.pop("title", None)
    body["type"] = "object"
    body["properties"] = {
        "apiVersion": {"type": "string", "description": "hub.cityhub.io/v1alpha1"},
        "kind": {"type": "string", "description": "The kind of this object."},
        "metadata": {"type": "object"},
        **body.get("properties", {}),  # a schema may restrict metadata.name (the only metadata a CRD may)
    }
    return body


def _crd(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    categories: list[str],
    scope: str,
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    status: bool,
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _root(schema)},
        "additionalPrinterColumns": columns,
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {labels.PART_OF: "cityhub", labels.MANAGED_BY: "cityhub"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": categories,
            },
            "versions": [version],
        },
    }


def _own_crd(doc: dict[str, Any], scope: str) -> dict[str, Any]:
    """A CRD whose schema file declares its own names under x-cityhub (not a component request kind)."""
    meta = doc["x-cityhub"]
    return _crd(
        kind=meta["kind"],
        plural=meta["plural"],
        singular=meta["singular"],
        short_names=list(meta.get("shortNames", [])),
        categories=list(meta.get("categories", [])),
        scope=scope,
        schema=doc,
        columns=copy.deepcopy(meta.get("printerColumns", [])),
        status=False,
    )


def catalog_crd() -> dict[str, Any]:
    """The cluster-scoped ComponentOffering CRD (the catalog, 一本账)."""
    return _own_crd(schemas.catalog_document(), "Cluster")


def feedback_crd() -> dict[str, Any]:
    """The namespaced ComponentFeedback CRD: departments' ratings (schemas/feedback.schema.json)."""
    return _own_crd(schemas.feedback_document(), "Namespaced")


def request_crd(ctype: ComponentType) -> dict[str, Any]:
    """The namespaced request CRD of one component type."""
    columns = [*REQUEST_COLUMNS_BEFORE, *ctype.printer_columns, *REQUEST_COLUMNS_AFTER]
    return _crd(
        kind=ctype.kind,
        plural=ctype.plural,
        singular=ctype.singular,
        short_names=list(ctype.short_names),
        categories=[CATEGORY],
        scope="Namespaced",
        schema=schemas.request_schema(ctype),
        columns=copy.deepcopy(columns),
        status=True,
    )


def render_crds() -> list[dict[str, Any]]:
    """The component API: the catalog first, then one request kind per component type (by name)."""
    return [catalog_crd(), *(request_crd(t) for _, t in sorted(registry.component_types().items()))]


def install_set() -> list[dict[str, Any]]:
    """Every CRD cityhub installs: the component API and the departments' feedback kind (not a request)."""
    return [*render_crds(), feedback_crd()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cityhub_api.crds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of YAML documents")
    args = parser.parse_args(argv)
    crds = render_crds()
    if args.json:
        json.dump(crds, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        yaml.safe_dump_all(crds, sys.stdout, allow_unicode=True, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
