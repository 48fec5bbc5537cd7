"""Stack configuration: every bad input fails before any resource, naming the key path and the fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cityhub import config_codes
from cityhub.config import ConfigError, load_config, raw_stack_config
from cityhub.config_schema import hub_schema

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def stack_raw(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    return {key.removeprefix("cityhub:"): value for key, value in doc.items()}


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(stack_raw("dev"))


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    return str(info.value)


def dept(raw: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(d for d in raw["departments"] if d["slug"] == slug)


# --- the shipped stacks


@pytest.mark.parametrize("stack", ["dev", "example-city"])
def test_shipped_stacks_are_valid(stack: str) -> None:
    config = load_config(stack_raw(stack))
    assert config.mode == "normal"
    assert [c.name for c in config.clusters] == ["hub"]


def test_example_city_is_realistic() -> None:
    config = load_config(stack_raw("example-city"))
    assert len(config.departments) >= 20
    assert {d.level for d in config.departments} == {"市", "区", "街道"}
    districts = {d.division_code for d in config.departments if d.level != "市"}
    assert len(districts) == 2 and districts <= set(config.districts)
    assert all(config_codes.credit_code_problem(d.credit_code) is None for d in config.departments)
    assert all(d.credit_code.startswith("11") for d in config.departments), (
        "government bodies (机关) start 11"
    )
    assert any(d.emergency_responder for d in config.departments)


def test_dev_stack_keeps_the_city_the_foundation_test_expects() -> None:
    config = load_config(stack_raw("dev"))
    assert (config.city, config.division_code) == ("示例市", "330100")


# --- the failures the issue names


def test_unknown_zone(raw: dict[str, Any]) -> None:
    dept(raw, "chengguan")["zone"] = "zhuanwang"
    message = problems(raw)
    assert "cityhub:departments[1].zone: unknown zone 'zhuanwang'" in message
    assert "egov, internet, private" in message


def test_duplicate_slug(raw: dict[str, Any]) -> None:
    raw["departments"][3]["slug"] = "yingji"
    assert "cityhub:departments[3].slug: duplicate slug 'yingji', already used by departments[0]" in problems(
        raw
    )


def test_invalid_credit_code_check_character(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["creditCode"] = "11330100024900011A"
    message = problems(raw)
    assert "cityhub:departments[0].creditCode" in message
    assert "check character 'A'" in message and "give 'R'" in message


def test_credit_code_with_forbidden_letters(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["creditCode"] = "11330100O2490001IR"
    message = problems(raw)
    assert "cityhub:departments[0].creditCode" in message and "except I, O, Z, S, V" in message


@pytest.mark.parametrize("value", ["-4", -4, "4 cores", "eight", 1.5])
def test_negative_or_malformed_quota(raw: dict[str, Any], value: object) -> None:
    dept(raw, "jiaotong")["quota"]["cpu"] = value
    message = problems(raw)
    assert "cityhub:departments[3].quota.cpu" in message
    assert "non-negative Kubernetes quantity such as 4, 500m, 16Gi" in message


def test_negative_pod_count(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["emergencyQuota"]["pods"] = -1
    assert "cityhub:departments[0].emergencyQuota.pods: -1 must be minimum 0" in problems(raw)


def test_chinese_characters_in_a_slug(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["slug"] = "应急局"
    message = problems(raw)
    assert 'cityhub:departments[0].slug: "应急局" must be a DNS label' in message
    assert "pinyin" in message


def test_upper_case_zone_slug(raw: dict[str, Any]) -> None:
    raw["zones"][0]["slug"] = "eGov"
    assert "cityhub:zones[0].slug" in problems(raw)


def test_core_data_department_in_a_public_zone(raw: dict[str, Any]) -> None:
    dept(raw, "dashuju")["zone"] = "internet"
    message = problems(raw)
    assert "cityhub:departments[2].zone: department dashuju holds core data (核心)" in message
    assert "zone 'internet' is public" in message


# --- more mistakes people make


def test_every_problem_is_reported_at_once(raw: dict[str, Any]) -> None:
    dept(raw, "chengguan")["zone"] = "nowhere"
    dept(raw, "yingji")["creditCode"] = "11330100024900011A"
    raw["departments"][3]["slug"] = "yingji"
    message = problems(raw)
    assert "(3 problems)" in message and "no resource was changed" in message


def test_unknown_key_suggests_the_right_one(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["emergencyResponders"] = True
    raw["zone"] = []
    message = problems(raw)
    assert (
        "cityhub:departments[0].emergencyResponders: unknown key; did you mean 'emergencyResponder'?"
        in message
    )
    assert "cityhub:zone: unknown key; did you mean 'zones'?" in message


def test_missing_required_key(raw: dict[str, Any]) -> None:
    del dept(raw, "yingji")["dataGrade"]
    del dept(raw, "yingji")["quota"]["memory"]
    message = problems(raw)
    assert "cityhub:departments[0].dataGrade: is required but missing" in message
    assert "cityhub:departments[0].quota.memory: is required but missing" in message


def test_level_and_grade_must_be_the_chinese_words(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["level"] = "city"
    dept(raw, "yingji")["dataGrade"] = "secret"
    message = problems(raw)
    assert 'cityhub:departments[0].level: "city" is not one of: 市, 区, 街道' in message
    assert 'cityhub:departments[0].dataGrade: "secret" is not one of: 一般, 重要, 核心' in message


def test_display_name_must_be_chinese(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["name"] = "Emergency Bureau"
    assert "cityhub:departments[0].name" in problems(raw)


def test_unquoted_division_code(raw: dict[str, Any]) -> None:
    raw["divisionCode"] = 330100
    assert "cityhub:divisionCode: 330100 must be a 6-digit administrative division code" in problems(raw)


def test_division_codes_must_belong_to_the_city_and_its_districts(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["divisionCode"] = "310100"
    dept(raw, "dongcheng-yingji")["divisionCode"] = "330199"
    dept(raw, "xihu-hubin")["divisionCode"] = "330100"
    dept(raw, "chengguan")["divisionCode"] = "330102"
    message = problems(raw)
    assert "cityhub:departments[0].divisionCode: division code '310100' is not in the city 330100" in message
    assert (
        "cityhub:departments[1].divisionCode: a city-level (市) department must use the city's code"
        in message
    )
    assert (
        "cityhub:departments[4].divisionCode: '330199' is not a district under cityhub:districts" in message
    )
    assert "cityhub:departments[5].divisionCode: a 街道-level department must use its district's" in message


def test_unknown_cluster(raw: dict[str, Any]) -> None:
    dept(raw, "yingji")["cluster"] = "edge"
    assert "cityhub:departments[0].cluster: department yingji: unknown cluster 'edge'" in problems(raw)


def test_flows_and_services_name_declared_zones(raw: dict[str, Any]) -> None:
    raw["flows"][0]["to"] = "gov"
    raw["sharedServices"][0]["zones"].append("dmz")
    message = problems(raw)
    assert "cityhub:flows[0].to: unknown zone 'gov'" in message
    assert "cityhub:sharedServices[0].zones[3]: unknown zone 'dmz'" in message


def test_important_data_needs_an_encrypted_class(raw: dict[str, Any]) -> None:
    raw["storage"]["classes"][1]["encrypted"] = False
    assert "cityhub:storage.classes[1].encrypted: class 'cityhub-encrypted' may hold 重要 data" in problems(
        raw
    )


def test_storage_for_a_grade_no_class_may_hold(raw: dict[str, Any]) -> None:
    raw["storage"]["classes"] = raw["storage"]["classes"][:1]
    message = problems(raw)
    assert "cityhub:departments[0].quota.storage: department yingji has data grade 重要" in message
    assert "cityhub:departments[2].quota.storage: department dashuju has data grade 核心" in message


def test_dynamic_storage_needs_a_provisioner(raw: dict[str, Any]) -> None:
    raw["storage"]["mode"] = "dynamic"
    assert "cityhub:storage.classes[0].provisioner: is required when storage.mode is dynamic" in problems(raw)


def test_one_default_storage_class(raw: dict[str, Any]) -> None:
    raw["storage"]["classes"][2]["default"] = True
    assert "cityhub:storage.classes[2].default: only one class may be the default" in problems(raw)


def test_mode_is_normal_or_emergency(raw: dict[str, Any]) -> None:
    raw["mode"] = "急"
    assert 'cityhub:mode: "急" is not one of: normal, emergency' in problems(raw)


# --- what a valid configuration becomes


def test_emergency_quota_overlays_the_normal_quota(raw: dict[str, Any]) -> None:
    config = load_config(raw)
    yingji = next(d for d in config.departments if d.slug == "yingji")
    assert (yingji.quota.cpu, yingji.quota.pods, yingji.quota.gpu, yingji.quota.storage) == (
        "8",
        50,
        0,
        "50Gi",
    )
    emergency = yingji.quota_for("emergency")
    assert (emergency.cpu, emergency.memory, emergency.pods, emergency.gpu) == ("32", "64Gi", 200, 2)
    assert emergency.storage == "50Gi", "keys not in emergencyQuota keep their normal value"
    street = next(d for d in config.departments if d.slug == "xihu-hubin")
    assert street.quota_for("emergency") == street.quota


def test_defaults(raw: dict[str, Any]) -> None:
    for key in ("mode", "clusters", "flows", "sharedServices", "gpuPool", "storage", "districts"):
        raw.pop(key)
    for d in raw["departments"]:
        d["quota"].pop("storage", None)
        d.get("emergencyQuota", {}).pop("storage", None)
    config = load_config(raw)
    assert config.mode == "normal"
    assert [(c.name, c.role, c.ambient) for c in config.clusters] == [("hub", "hub", True)]
    assert {d.cluster for d in config.departments} == {"hub"}
    assert config.gpu_pool.gpus == 0
    assert config.gpu_pool.node_selector == {"cityhub.io/pool": "gpu-inference"}
    assert config.storage is None
    assert config.limits.default_request_cpu == "100m"


def test_raw_config_comes_from_the_pulumi_program(monkeypatch: pytest.MonkeyPatch) -> None:
    # The language host passes config as PULUMI_CONFIG: a JSON map of strings, objects JSON-encoded.
    bag = {
        "cityhub:city": "示例市",
        "cityhub:divisionCode": "330100",
        "cityhub:zones": json.dumps([{"slug": "egov", "name": "政务外网"}]),
        "kubernetes:context": "elsewhere",
    }
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(bag))
    assert raw_stack_config() == {
        "city": "示例市",
        "divisionCode": "330100",
        "zones": [{"slug": "egov", "name": "政务外网"}],
    }


# --- credit codes (GB 32100-2015)


def test_credit_code_check_character() -> None:
    assert config_codes.credit_code_problem("91350100M000100Y43") is None  # a published example
    assert config_codes.make_credit_code("11330100024900011") == "11330100024900011R"
    assert config_codes.credit_code_problem("91350100M000100Y44") is not None
    assert config_codes.credit_code_problem("91350100M000100Y4") is not None


def test_schema_documents_every_department_key() -> None:
    department = hub_schema()["$defs"]["department"]["properties"]
    assert all("description" in spec for spec in department.values())


def test_zero_storage_needs_no_class(raw: dict[str, Any]) -> None:
    raw.pop("storage")
    for d in raw["departments"]:
        d["quota"]["storage"] = "0Mi" if d["slug"] == "yingji" else 0
    assert load_config(raw).storage is None
    dept(raw, "yingji")["quota"]["storage"] = "1Mi"
    assert "cityhub:departments[0].quota.storage: department yingji has data grade 重要" in problems(raw)


def test_only_one_cluster_may_be_the_ambient_one(raw: dict[str, Any]) -> None:
    raw["clusters"] = [{"name": "hub"}, {"name": "edge", "role": "edge"}]
    assert "cityhub:clusters[1]: clusters[0] already targets the cluster in $KUBECONFIG" in problems(raw)
    raw["clusters"][1]["context"] = "edge"
    assert [c.name for c in load_config(raw).clusters] == ["hub", "edge"]


def test_edge_clusters_are_refused_outside_the_city_or_on_a_claimed_division(raw: dict[str, Any]) -> None:
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "xihu-edge", "role": "edge", "divisionCode": "330106", "context": "xihu"},
        {"name": "xihu-edge-2", "role": "edge", "divisionCode": "330106", "context": "xihu2"},
        {"name": "far-edge", "role": "edge", "divisionCode": "440106", "context": "far"},
    ]
    found = problems(raw)
    assert (
        "cityhub:clusters[2].divisionCode: edge cluster 'xihu-edge-2' claims division 330106, already the "
        "edge 'xihu-edge''s" in found
    )
    assert "cityhub:clusters[3].divisionCode: division code '440106' is not in the city" in found
    raw["clusters"] = raw["clusters"][:2]
    assert [c.name for c in load_config(raw).clusters] == ["hub", "xihu-edge"]


def test_a_street_office_defaults_to_the_edge_of_its_division(raw: dict[str, Any]) -> None:
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "xihu-edge", "role": "edge", "divisionCode": "330106", "context": "xihu"},
    ]
    placed = {d.slug: d.cluster for d in load_config(raw).departments}
    assert placed["xihu-hubin"] == "xihu-edge"  # 街道 of 330106
    assert placed["yingji"] == "hub"  # 市
    assert placed["dongcheng-yingji"] == "hub"  # 区 of 330102: no edge claims it
    dept(raw, "xihu-hubin")["cluster"] = "hub"  # an explicit choice wins
    assert {d.slug: d.cluster for d in load_config(raw).departments}["xihu-hubin"] == "hub"


def test_a_street_office_with_its_own_code_lands_on_its_streets_edge_else_its_districts(
    raw: dict[str, Any],
) -> None:
    """市—区—街道: a city of ~150 street offices gives a street its own small edge by the street's 9-digit
    code (GB/T 10114); a street without one stays with its district's edge."""
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "xihu-edge", "role": "edge", "divisionCode": "330106", "context": "xihu"},
        {"name": "hubin-edge", "role": "edge", "divisionCode": "330106001", "context": "hubin"},
    ]
    dept(raw, "xihu-hubin")["divisionCode"] = "330106001"  # 湖滨街道
    assert {d.slug: d.cluster for d in load_config(raw).departments}["xihu-hubin"] == "hubin-edge"
    dept(raw, "xihu-hubin")["divisionCode"] = "330106002"  # 北山街道: no edge of its own
    assert {d.slug: d.cluster for d in load_config(raw).departments}["xihu-hubin"] == "xihu-edge"


def test_street_codes_belong_to_a_district_and_to_street_offices(raw: dict[str, Any]) -> None:
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "stray-edge", "role": "edge", "divisionCode": "330199001", "context": "stray"},
    ]
    dept(raw, "dongcheng-yingji")["divisionCode"] = "330102001"  # a district's department
    dept(raw, "xihu-hubin")["divisionCode"] = "330107001"  # no such district
    found = problems(raw)
    assert (
        "cityhub:clusters[1].divisionCode: street code '330199001' starts with '330199', not a district "
        "under cityhub:districts" in found
    )
    assert (
        "cityhub:departments[4].divisionCode: '330102001' is a street's 9-digit code: only a street (街道) "
        "department may use one; a 区-level department uses its district's code '330102'" in found
    )
    assert "cityhub:departments[5].divisionCode: street code '330107001' starts with '330107'" in found
    raw["clusters"][1]["divisionCode"] = "33010600"
    hint = "must be a 6-digit administrative division code (GB/T 2260), or a street's 9-digit code"
    assert f'cityhub:clusters[1].divisionCode: "33010600" {hint}' in problems(raw)
