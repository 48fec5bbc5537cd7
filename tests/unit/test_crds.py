"""CRDs generated from schemas/: structure, CEL rules, defaults, printer columns, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cityhub_api import crds, registry, schemas

REPO = Path(__file__).resolve().parents[2]


def by_kind() -> dict[str, dict[str, Any]]:
    return {c["spec"]["names"]["kind"]: c for c in crds.render_crds()}


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties", "patternProperties"):
            for name, child in node.get(key, {}).items():
                out += walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            out += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_one_catalog_kind_and_one_request_kind_per_component_type() -> None:
    kinds = by_kind()
    assert set(kinds) == {"ComponentOffering"} | {t.kind for t in registry.component_types().values()}
    assert "MessagingChannel" in kinds
    catalog = kinds.pop("ComponentOffering")
    assert catalog["spec"]["scope"] == "Cluster"
    assert "subresources" not in catalog["spec"]["versions"][0]
    assert "cityhub" not in catalog["spec"]["names"]["categories"]  # not listed as a department's component
    for crd in kinds.values():
        spec = crd["spec"]
        assert spec["group"] == "hub.cityhub.io"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == ["cityhub"]
        assert spec["names"]["shortNames"]
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.hub.cityhub.io"
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", sorted(by_kind()))
def test_schema_is_structural_and_described(kind: str) -> None:
    root = root_schema(by_kind()[kind])
    assert root["description"]
    for path, node in walk(root):
        if path in (".apiVersion", ".kind", ".metadata") or path.startswith(".metadata."):
            continue
        if not path.endswith(("[]", "{}")):  # list items and map values are described by their parent
            assert node.get("description"), f"{kind}{path}: no description for kubectl explain"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{kind}{path}: no type"
        assert "$ref" not in node and "$schema" not in node and "$id" not in node
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}: not structural"
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            assert "type" not in branch, f"{kind}{path}: type inside anyOf is not structural"
        assert not any(k.startswith("x-cityhub") for k in node), f"{kind}{path}: x-cityhub leaked"


def test_messaging_defaults_and_cel_rules() -> None:
    root = root_schema(by_kind()["MessagingChannel"])
    spec = root["properties"]["spec"]
    props = spec["properties"]
    assert spec["required"] == ["offering"]
    assert props["deletionPolicy"]["default"] == "Delete"
    assert props["deletionPolicy"]["enum"] == ["Delete", "Orphan"]
    assert props["storage"]["default"] == "file"
    assert root["properties"]["metadata"]["properties"]["name"]["maxLength"] == 63
    # Immutable fields are transition rules naming the field.
    for field in ("offering", "secretName"):
        (rule,) = props[field]["x-kubernetes-validations"]
        assert rule["rule"] == "self == oldSelf" and f"spec.{field} is immutable" in rule["message"]
    # A cross-field rule on spec, with a message naming the field.
    (memory,) = spec["x-kubernetes-validations"]
    assert "self.storage != 'memory'" in memory["rule"] and "spec.limits.maxBytes" in memory["message"]
    assert memory["fieldPath"] == ".limits"
    # int-or-string with its own constraints becomes a CEL rule (type inside anyOf is not structural).
    max_bytes = props["limits"]["properties"]["maxBytes"]
    assert max_bytes["x-kubernetes-int-or-string"] is True and "anyOf" not in max_bytes
    (rule,) = max_bytes["x-kubernetes-validations"]
    assert rule["rule"].startswith("type(self) == int ? (self >= 1) : (self.matches(")
    assert "spec.limits.maxBytes" in rule["message"]
    share = props["shareWith"]
    assert share["x-kubernetes-list-type"] == "map" and share["x-kubernetes-list-map-keys"] == ["department"]


def test_status_has_conditions_as_a_map_list() -> None:
    status = root_schema(by_kind()["MessagingChannel"])["properties"]["status"]["properties"]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert {"observedGeneration", "connectionSecret", "endpoints", "backend", "plan", "limits"} <= set(status)
    # Credentials never go to status: nothing there is named like a secret.
    assert not any(word in name.lower() for name in status for word in ("password", "token", "seed", "creds"))


def test_printer_columns() -> None:
    columns = by_kind()["MessagingChannel"]["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    assert names[:4] == ["Offering", "Plan", "Ready", "Synced"] and names[-1] == "Age"
    paths = {c["name"]: c["jsonPath"] for c in columns}
    assert paths["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert paths["Synced"] == '.status.conditions[?(@.type=="Synced")].status'
    assert paths["Stream"] == ".status.backend.stream"
    for c in columns:
        assert c["type"] in ("string", "date", "integer", "number", "boolean")
        assert c["jsonPath"].startswith(".")
    catalog = by_kind()["ComponentOffering"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in catalog][:2] == ["Type", "Default-Plan"]
    (rule,) = root_schema(by_kind()["ComponentOffering"])["properties"]["spec"]["x-kubernetes-validations"]
    assert "defaultPlan" in rule["message"]


def test_cli_prints_the_same_crds_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert crds.main([]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == crds.render_crds()
    assert crds.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == crds.render_crds()


def request(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "hub.cityhub.io/v1alpha1",
        "kind": "MessagingChannel",
        "metadata": {"name": "traffic-events", "namespace": "jiaotong"},
        "spec": spec,
    }


def test_the_json_schema_itself_validates_requests() -> None:
    schema = schemas.request_schema(registry.component_types()["messaging"])
    validator = jsonschema.Draft202012Validator(schema)
    ok = request(
        offering="messaging",
        plan="standard",
        limits={"maxAge": "7d", "maxBytes": "10Gi", "maxMessages": 1000},
        shareWith=[{"department": "yingji", "purpose": "事件流转"}],
    )
    assert not list(validator.iter_errors(ok))
    assert not list(validator.iter_errors(request(offering="messaging", limits={"maxBytes": 1024})))
    bad = {
        "maxAge": request(offering="messaging", limits={"maxAge": "7 days"}),
        "maxBytes": request(offering="messaging", limits={"maxBytes": "12 GB"}),
        "offering": request(plan="x"),
        "deletionPolicy": request(offering="messaging", deletionPolicy="Keep"),
    }
    for field, obj in bad.items():
        errors = list(validator.iter_errors(obj))
        assert errors and any(field in (e.json_path + e.message) for e in errors), field


def test_a_new_component_type_is_one_schema_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "schemas", tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py"))
    doc = {
        "description": "A map layer (图层) of the unified spatio-temporal framework.",
        "x-cityhub": {
            "componentType": "maps",
            "kind": "MapLayer",
            "plural": "maplayers",
            "singular": "maplayer",
            "shortNames": ["ml"],
            "displayName": "地图图层 (maps)",
            "frontDoor": {"port": 3000},
        },
        "type": "object",
        "properties": {
            "crs": {
                "type": "string",
                "description": "Coordinate reference system.",
                "enum": ["EPSG:4490", "EPSG:3857"],
                "default": "EPSG:4490",
            }
        },
    }
    types = tmp_path / "types_a"
    shutil.copytree(REPO / "component_types", types)
    (types / "maps" / "schema.json").write_text(json.dumps(doc))
    monkeypatch.setenv("CITYHUB_COMPONENT_TYPES", str(types))
    kinds = {c["spec"]["names"]["kind"]: c for c in crds.render_crds()}
    assert {"ComponentOffering", "MessagingChannel", "MapLayer"} <= set(kinds)
    props = root_schema(kinds["MapLayer"])["properties"]["spec"]["properties"]
    assert props["crs"]["default"] == "EPSG:4490" and "offering" in props


def test_inconsistent_type_schemas_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    types = tmp_path / "types_b"
    shutil.copytree(REPO / "component_types", types)
    monkeypatch.setenv("CITYHUB_COMPONENT_TYPES", str(types))
    path = types / "messaging" / "schema.json"
    doc = json.loads(path.read_text())
    doc["properties"]["offering"] = {"type": "string", "description": "clash"}
    path.write_text(json.dumps(doc))
    with pytest.raises(registry.SchemaError, match=r"clash with the common request envelope"):
        crds.render_crds()
    doc = json.loads((REPO / "component_types" / "messaging" / "schema.json").read_text())
    doc["x-cityhub"]["limits"]["maxWidth"] = "furlongs"
    path.write_text(json.dumps(doc))
    with pytest.raises(registry.SchemaError, match=r"x-cityhub.limits.maxWidth is 'furlongs'"):
        registry.component_types()
    doc = json.loads((REPO / "component_types" / "messaging" / "schema.json").read_text())
    doc["x-cityhub"]["frontDoor"]["sideDoors"] = [{"port": 5432}]
    path.write_text(json.dumps(doc))
    with pytest.raises(registry.SchemaError, match=r"frontDoor.sideDoors\[0\] needs workload and port"):
        registry.component_types()
