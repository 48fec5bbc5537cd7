"""A component type is one folder: point the registry at a fixture folder holding a minimal extra type
(tests/fixtures/cityhub_extra_types/parking) and everything that follows from types picks it up — CRDs,
RBAC, admission, the front door, the catalog, the stack's backend, the local operator and the docs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from cityhub_operator import drivers_loader
from cityhub_operator.driver import Request

from cityhub import local_operator
from cityhub.config import ConfigError, load_config
from cityhub.supervisor import Supervisor
from cityhub_api import apidocs, catalog, crds, registry
from cityhub_api.registry import ComponentType
from components import admission, tenancy
from tests.unit.test_components import find, hub, of_kind, stack_raw

REPO = Path(__file__).resolve().parents[2]
FIXTURE_ROOT = REPO / "tests" / "fixtures" / "cityhub_extra_types"


@pytest.fixture
def parking(monkeypatch: pytest.MonkeyPatch) -> Iterator[ComponentType]:
    monkeypatch.setenv("CITYHUB_COMPONENT_TYPES", f"{REPO / 'component_types'}:{FIXTURE_ROOT}")
    yield registry.component_types()["parking"]


def test_the_registry_finds_the_type_in_another_root(parking: ComponentType) -> None:
    assert parking.package == "cityhub_extra_types.parking" and parking.kind == "ParkingFeed"
    assert {"messaging", "parking"} <= set(registry.component_types())
    assert parking.front_door.selector == {"cityhub.io/service": "parking"}


def test_crds_and_api_docs_follow(parking: ComponentType) -> None:
    crd = next(c for c in crds.render_crds() if c["spec"]["names"]["kind"] == "ParkingFeed")
    assert crd["metadata"]["name"] == "parkingfeeds.hub.cityhub.io"
    assert crd["spec"]["names"]["shortNames"] == ["pf"] and crd["spec"]["names"]["categories"] == ["cityhub"]
    assert "## ParkingFeed (parking)" in apidocs.render()
    table = apidocs.component_table()
    assert "| 停车位数据 (parking) | `ParkingFeed` (`pf`) | an in-memory fixture |" in table


def test_rbac_and_admission_follow(parking: ComponentType) -> None:
    assert "parkingfeeds" in tenancy.component_request_resources()
    assert any(t.kind == "ParkingFeed" and t.component_type == "parking" for t in admission.request_types())


def test_catalog_and_stack_configuration_follow(parking: ComponentType) -> None:
    assert [o.name for o in catalog.load_offerings(("parking",))] == ["parking"]
    raw = stack_raw()
    raw["sharedServices"].append({"name": "parking", "zones": ["egov"]})
    raw["backends"] = {"deploy": ["parking"]}
    raw["backendsMasterKey"] = "k" * 48
    assert load_config(raw).backends.deploy == ("parking",)
    raw["backends"] = {"deploy": ["parkin"]}
    with pytest.raises(ConfigError, match=r"backends.deploy\[0\].*parking"):
        load_config(raw)


def test_the_stack_deploys_it_behind_its_front_door(parking: ComponentType) -> None:
    raw = stack_raw()
    raw["operator"] = {"deploy": True}
    raw["backends"] = {"deploy": ["parking"]}
    raw["backendsMasterKey"] = "k" * 48
    created = hub(raw)
    assert find(created, "CustomResourceDefinition", "parkingfeeds.hub.cityhub.io")
    (role,) = [r for r in of_kind(created, "ClusterRole") if r.k8s_name == "cityhub-operator"]
    assert any("parkingfeeds" in rule["resources"] for rule in role.inputs["rules"])
    door = find(created, "Service", "parking", "cityhub-system").inputs["spec"]
    assert door["ports"][0]["port"] == 8443 and door["ports"][0]["targetPort"] == 9443
    deployment = find(created, "Deployment", "parking", "cityhub-system").inputs
    assert door["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    operator = find(created, "Deployment", "cityhub-operator", "cityhub-system").inputs
    env = {e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CITYHUB_PARKING_URL"] == "https://parking.example"
    assert "parking" in env["CITYHUB_COMPONENTS"].split(",")


def test_the_operator_loads_its_driver(parking: ComponentType) -> None:
    driver = drivers_loader.load_driver(parking, {})
    request = Request("dept-jiaotong", "lot-1", "u1", "dept-jiaotong", {}, {})
    result = asyncio.run(driver.ensure(request))
    assert result.endpoints["url"].endswith("dept-jiaotong/lot-1")


def test_the_local_operator_starts_its_backend(
    parking: ComponentType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path))
    started, failed = local_operator.start_backends(Supervisor(tmp_path / "processes"), only=("parking",))
    assert failed == [] and started["parking"].operator_env == {"CITYHUB_PARKING_URL": "https://parking.example"}
    assert parking.load(registry.LOCAL).STARTED == ["parking"]


def test_an_operator_serving_some_types_publishes_only_their_offerings() -> None:
    """`operator.components: [messaging]` without a catalog list publishes messaging's offerings; naming an
    offering of a type the operator does not serve is refused, naming the key to change."""
    served = catalog.load_offerings((), ("messaging",))
    assert served and {o.component_type for o in served} == {"messaging"}
    inference = next(o.name for o in catalog.load_offerings() if o.component_type == "inference")
    refusal = r"not served by the operator.*cityhub:operator\.components"
    with pytest.raises(catalog.CatalogError, match=refusal):
        catalog.load_offerings((inference,), ("messaging",))
