"""The stack configuration: read the `cityhub:` keys, validate them whole, and build typed values.

Validation happens in two passes, both before any resource is declared:
1. the JSON Schema in schemas/hub-config.schema.json (shapes, patterns, enums);
2. the rules a schema cannot express: references between entries, duplicates, check characters,
   data grades against zones and storage classes.
Every problem is reported at once, each with its key path and what to change.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import replace
from typing import Any

from cityhub.config_codes import credit_code_problem
from cityhub.config_edges import edge_problems
from cityhub.config_model import (
    GRADE_RANK,
    Backends,
    Cluster,
    ContainerLimits,
    Department,
    Flow,
    GpuPool,
    HubConfig,
    OperatorConfig,
    Placement,
    Quota,
    SharedService,
    Storage,
    StorageClassSpec,
    Toleration,
    Zone,
)
from cityhub.config_schema import NAMESPACE, ConfigError, ConfigProblem, key_path, schema_problems
from cityhub.config_storage import backend_volume_problems, storage_problems
from cityhub_api import catalog, registry

__all__ = ["ConfigError", "ConfigProblem", "load_config", "raw_stack_config"]

DEFAULT_CLUSTERS: list[dict[str, Any]] = [{"name": "hub", "role": "hub"}]


def raw_stack_config() -> dict[str, Any]:
    """The stack's `cityhub:*` keys as plain data (objects decoded), from the running Pulumi program."""
    import pulumi.runtime.config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw: dict[str, Any] = {}
    for key in sorted(keys):
        namespace, _, name = key.partition(":")
        if namespace != NAMESPACE or not name:
            continue
        value = runtime_config.get_config(key)
        # Pulumi hands structured values (lists, maps) to the program as JSON text; scalars stay strings.
        if isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        raw[name] = value
    return raw


def load_config(raw: dict[str, Any]) -> HubConfig:
    """Validate `raw` (the `cityhub:` keys without their prefix) and build the typed configuration.

    Raises ConfigError listing every problem found.
    """
    raw = dict(raw)
    # The master key is a secret: checked here, by length only, so no message can ever contain it.
    master_key = raw.pop(MASTER_KEY, None)
    problems = schema_problems(raw) + _master_key_problems(raw, master_key)
    if problems:
        # Cross-reference rules assume well-formed entries, so they wait until the shapes are right.
        raise ConfigError(problems)
    problems = rule_problems(raw)
    if problems:
        raise ConfigError(problems)
    config = build(raw)
    return replace(config, backends_master_key=master_key) if master_key else config


MASTER_KEY = "backendsMasterKey"
STREET_CODE_LENGTH = 9
"""A street's (乡级, GB/T 10114) division code: its district's 6 digits and 3 more."""


def _master_key_problems(raw: dict[str, Any], key: object) -> list[ConfigProblem]:
    fix = (
        f"set it with `cityhub pulumi config set --secret {NAMESPACE}:{MASTER_KEY} "
        "\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')\"`"
    )
    if key is None:
        if (raw.get("backends") or {}).get("deploy"):
            return [ConfigProblem(f"{NAMESPACE}:{MASTER_KEY}", f"is required to deploy backends; {fix}")]
        return []
    if not isinstance(key, str) or len(key) < 32:
        return [
            ConfigProblem(
                f"{NAMESPACE}:{MASTER_KEY}", f"must be at least 32 characters of random text; {fix}"
            )
        ]
    return []


# --- rules a schema cannot express


def rule_problems(raw: dict[str, Any]) -> list[ConfigProblem]:
    zones = {z["slug"]: z for z in raw["zones"]}
    clusters = [c["name"] for c in raw.get("clusters", DEFAULT_CLUSTERS)]
    districts = {d["code"] for d in raw.get("districts", [])}
    classes = raw.get("storage", {}).get("classes", [])
    problems: list[ConfigProblem] = []
    problems += _duplicates(raw.get("zones", []), "zones", "slug")
    problems += _duplicates(raw.get("clusters", []), "clusters", "name")
    problems += _duplicates(raw.get("districts", []), "districts", "code")
    problems += _duplicates(raw.get("sharedServices", []), "sharedServices", "name")
    problems += _duplicates(classes, "storage.classes", "name")
    problems += _duplicates(raw["departments"], "departments", "slug")
    problems += _duplicates(raw["departments"], "departments", "creditCode")

    city_prefix = raw["divisionCode"][:4]
    for i, flow in enumerate(raw.get("flows", [])):
        for end in ("from", "to"):
            problems += _zone_ref(zones, flow[end], ["flows", i, end])
    for i, service in enumerate(raw.get("sharedServices", [])):
        for j, zone in enumerate(service["zones"]):
            problems += _zone_ref(zones, zone, ["sharedServices", i, "zones", j])
    ambient = [
        i for i, c in enumerate(raw.get("clusters", [])) if "kubeconfig" not in c and "context" not in c
    ]
    for i in ambient[1:]:
        problems.append(
            ConfigProblem(
                key_path(["clusters", i]),
                f"clusters[{ambient[0]}] already targets the cluster in $KUBECONFIG; "
                "give this one its own kubeconfig or context",
            )
        )
    claimed: dict[str, str] = {}
    for i, cluster in enumerate(raw.get("clusters", [])):
        code = cluster.get("divisionCode")
        if code and not code.startswith(city_prefix):
            problems.append(_outside_city(["clusters", i, "divisionCode"], code, raw["divisionCode"]))
        elif code and len(code) == STREET_CODE_LENGTH and districts and code[:6] not in districts:
            problems.append(_street_outside_districts(["clusters", i, "divisionCode"], code, districts))
        elif code and cluster.get("role") == "edge":
            # One edge per division: two would split its departments' defaults and alerts between them.
            if code in claimed:
                problems.append(
                    ConfigProblem(
                        key_path(["clusters", i, "divisionCode"]),
                        f"edge cluster {cluster['name']!r} claims division {code}, already the edge "
                        f"{claimed[code]!r}'s; give each district or street one edge cluster",
                    )
                )
            else:
                claimed[code] = cluster["name"]

    for i, dept in enumerate(raw["departments"]):
        at = ["departments", i]
        who = f"department {dept['slug']}"
        problems += _zone_ref(zones, dept["zone"], [*at, "zone"])
        zone = zones.get(dept["zone"])
        if zone and zone.get("public") and dept["dataGrade"] == "核心":
            problems.append(
                ConfigProblem(
                    key_path([*at, "zone"]),
                    f"{who} holds core data (核心) but zone {dept['zone']!r} is public; "
                    "move it to a non-public zone or lower its dataGrade",
                )
            )
        if why := credit_code_problem(dept["creditCode"]):
            problems.append(ConfigProblem(key_path([*at, "creditCode"]), f"{dept['creditCode']!r} {why}"))
        problems += _division(dept, raw["divisionCode"], districts, at)
        if "cluster" in dept and dept["cluster"] not in clusters:
            problems.append(
                ConfigProblem(
                    key_path([*at, "cluster"]),
                    f"{who}: unknown cluster {dept['cluster']!r}; known clusters: {', '.join(clusters)}",
                )
            )
        storage = [dept["quota"].get("storage", 0), dept.get("emergencyQuota", {}).get("storage", 0)]
        if not all(_is_zero(s) for s in storage) and not any(
            GRADE_RANK[dept["dataGrade"]] <= GRADE_RANK[c["maxGrade"]] for c in classes
        ):
            problems.append(
                ConfigProblem(
                    key_path([*at, "quota", "storage"]),
                    f"{who} has data grade {dept['dataGrade']} but no storage class may hold it; "
                    f"add a class with maxGrade {dept['dataGrade']} under cityhub:storage.classes "
                    "or set storage to 0",
                )
            )
    problems += storage_problems(raw.get("storage"))
    problems += backend_volume_problems(raw)
    problems += edge_problems(raw)
    problems += _operator_problems(raw.get("operator", {}))
    return problems


def _operator_problems(raw: dict[str, Any]) -> list[ConfigProblem]:
    """Component types and offerings named in cityhub:operator must exist."""
    problems: list[ConfigProblem] = []
    declared = registry.component_types()
    for i, name in enumerate(raw.get("components", [])):
        if name not in declared:
            problems.append(
                ConfigProblem(
                    key_path(["operator", "components", i]),
                    f"unknown component type {name!r}; types (component_types/): {', '.join(declared)}",
                )
            )
    available = catalog.offering_names()
    for i, name in enumerate(raw.get("catalog", [])):
        if name not in available:
            problems.append(
                ConfigProblem(
                    key_path(["operator", "catalog", i]),
                    f"no offering {name!r} in any type's catalog.yaml; "
                    f"offerings: {', '.join(sorted(available))}",
                )
            )
    return problems


def _operator(raw: dict[str, Any]) -> OperatorConfig:
    base = OperatorConfig()
    resources = raw.get("resources", {})
    return OperatorConfig(
        deploy=raw.get("deploy", base.deploy),
        image=raw.get("image", base.image),
        components=tuple(raw.get("components", ())),
        catalog=tuple(raw.get("catalog", ())),
        log_level=raw.get("logLevel", base.log_level),
        drift_interval=raw.get("driftInterval", base.drift_interval),
        replicas=raw.get("replicas", base.replicas),
        worker_limit=raw.get("workerLimit", base.worker_limit),
        cpu=str(resources.get("cpu", base.cpu)),
        memory=str(resources.get("memory", base.memory)),
        env=dict(raw.get("env", {})),
        backend_secret=raw.get("backendSecret"),
    )


def _is_zero(quantity: str | int) -> bool:
    """Whether a (schema-valid) quantity is zero, whatever its unit: 0, "0", "0Gi", "0.0"."""
    return float(re.match(r"[0-9.]+", str(quantity)).group()) == 0  # type: ignore[union-attr]


def _duplicates(items: list[dict[str, Any]], where: str, key: str) -> list[ConfigProblem]:
    seen = Counter(item[key] for item in items)
    problems = []
    for i, item in enumerate(items):
        if seen[item[key]] > 1:
            first = next(j for j, other in enumerate(items) if other[key] == item[key])
            if first != i:
                problems.append(
                    ConfigProblem(
                        f"{NAMESPACE}:{where}[{i}].{key}",
                        f"duplicate {key} {item[key]!r}, already used by {where}[{first}]; "
                        f"each {key} must be unique",
                    )
                )
    return problems


def _zone_ref(zones: dict[str, Any], zone: str, at: list[str | int]) -> list[ConfigProblem]:
    if zone in zones:
        return []
    return [
        ConfigProblem(
            key_path(at), f"unknown zone {zone!r}; declared zones under cityhub:zones are: {', '.join(zones)}"
        )
    ]


def _outside_city(at: list[str | int], code: str, city: str) -> ConfigProblem:
    return ConfigProblem(
        key_path(at), f"division code {code!r} is not in the city {city}: it must start with {city[:4]}"
    )


def _street_outside_districts(at: list[str | int], code: str, districts: set[str]) -> ConfigProblem:
    return ConfigProblem(
        key_path(at),
        f"street code {code!r} starts with {code[:6]!r}, not a district under cityhub:districts "
        f"({', '.join(sorted(districts))}); a street's 9-digit code begins with its district's 6 digits",
    )


def _division(
    dept: dict[str, Any], city: str, districts: set[str], at: list[str | int]
) -> list[ConfigProblem]:
    code, level, path = dept["divisionCode"], dept["level"], [*at, "divisionCode"]
    if not code.startswith(city[:4]):
        return [_outside_city(path, code, city)]
    if len(code) == STREET_CODE_LENGTH:
        if level != "街道":
            return [
                ConfigProblem(
                    key_path(path),
                    f"{code!r} is a street's 9-digit code: only a street (街道) department may use one; "
                    f"a {level}-level department uses "
                    + (f"the city's code {city}" if level == "市" else f"its district's code {code[:6]!r}"),
                )
            ]
        if districts and code[:6] not in districts:
            return [_street_outside_districts(path, code, districts)]
        return []
    if level == "市" and code != city:
        return [
            ConfigProblem(
                key_path(path), f"a city-level (市) department must use the city's code {city}, not {code!r}"
            )
        ]
    if level != "市" and code == city:
        return [
            ConfigProblem(
                key_path(path),
                f"a {level}-level department must use its district's division code, not the city's",
            )
        ]
    if level != "市" and districts and code not in districts:
        return [
            ConfigProblem(
                key_path(path),
                f"{code!r} is not a district under cityhub:districts ({', '.join(sorted(districts))}); "
                "add the district or fix the code",
            )
        ]
    return []


def build(raw: dict[str, Any]) -> HubConfig:
    clusters = tuple(
        Cluster(
            name=c["name"],
            role=c.get("role", "hub"),
            division_code=c.get("divisionCode"),
            kubeconfig=c.get("kubeconfig"),
            context=c.get("context"),
            api_server=c.get("apiServer"),
        )
        for c in raw.get("clusters", DEFAULT_CLUSTERS)
    )
    return HubConfig(
        city=raw["city"],
        division_code=raw["divisionCode"],
        mode=raw.get("mode", "normal"),
        clusters=clusters,
        districts={d["code"]: d["name"] for d in raw.get("districts", [])},
        zones=tuple(Zone(z["slug"], z["name"], z.get("public", False)) for z in raw["zones"]),
        flows=tuple(Flow(f["from"], f["to"], tuple(f.get("ports", ()))) for f in raw.get("flows", [])),
        shared_services=tuple(
            SharedService(s["name"], tuple(s["zones"]), s.get("displayName"))
            for s in raw.get("sharedServices", [])
        ),
        limits=_limits(raw.get("limits", {})),
        gpu_pool=_gpu_pool(raw.get("gpuPool", {})),
        storage=_storage(raw["storage"]) if "storage" in raw else None,
        departments=tuple(_department(d, default_cluster(clusters, d)) for d in raw["departments"]),
        operator=_operator(raw.get("operator", {})),
        backends=_backends(raw.get("backends") or {}),
        monitoring=dict(raw.get("monitoring", {})),
        system_placement=_placement(raw.get("systemPlacement", {})),
    )


def _placement(raw: dict[str, Any]) -> Placement:
    return Placement(
        node_selector=dict(raw.get("nodeSelector", {})),
        tolerations=tuple(_toleration(t) for t in raw.get("tolerations", [])),
    )


def _toleration(raw: dict[str, Any]) -> Toleration:
    return Toleration(raw["key"], raw.get("operator", "Exists"), raw.get("value"), raw.get("effect"))


def _backends(raw: dict[str, Any]) -> Backends:
    return Backends(
        deploy=tuple(raw.get("deploy", ())),
        storage_class=raw.get("storageClass"),
        settings={k: dict(v) for k, v in raw.items() if k not in ("deploy", "storageClass")},
    )


def _quota_fields(raw: dict[str, Any]) -> dict[str, str | int]:
    # Quantities may be written as YAML integers (cpu: 4); Kubernetes wants strings.
    fields: dict[str, str | int] = {}
    for key in ("cpu", "memory", "storage"):
        if key in raw:
            fields[key] = str(raw[key])
    for key in ("pods", "gpu", "components"):
        if key in raw:
            fields[key] = int(raw[key])
    return fields


def default_cluster(clusters: tuple[Cluster, ...], dept: dict[str, Any]) -> str:
    """Where a department without `cluster` lives: a district's or street office's (区/街道) on the edge
    cluster claiming its division, when there is one (中枢与末梢: close to where the work happens); every
    other department on the first cluster (the hub)."""
    if dept["level"] != "市":
        code = dept["divisionCode"]
        edges = {c.division_code: c.name for c in clusters if c.role == "edge" and c.division_code}
        # A street office with its own 9-digit code: its street's edge, else its district's (市—区—街道).
        for claimed in (code, code[:6]):
            if claimed in edges:
                return edges[claimed]
    return clusters[0].name


def _department(raw: dict[str, Any], default_cluster: str) -> Department:
    quota = Quota(**_quota_fields(raw["quota"]))  # type: ignore[arg-type]
    return Department(
        slug=raw["slug"],
        name=raw["name"],
        credit_code=raw["creditCode"],
        level=raw["level"],
        division_code=raw["divisionCode"],
        zone=raw["zone"],
        data_grade=raw["dataGrade"],
        emergency_responder=raw.get("emergencyResponder", False),
        quota=quota,
        emergency_quota=quota.overlay(_quota_fields(raw.get("emergencyQuota", {}))),
        cluster=raw.get("cluster", default_cluster),
        admins=tuple(raw.get("admins", ())),
    )


def _limits(raw: dict[str, Any]) -> ContainerLimits:
    base = ContainerLimits()
    request = raw.get("defaultRequest", {})
    limit = raw.get("default", {})
    return ContainerLimits(
        default_request_cpu=str(request.get("cpu", base.default_request_cpu)),
        default_request_memory=str(request.get("memory", base.default_request_memory)),
        default_cpu=str(limit.get("cpu", base.default_cpu)),
        default_memory=str(limit.get("memory", base.default_memory)),
    )


def _gpu_pool(raw: dict[str, Any]) -> GpuPool:
    base = GpuPool()
    tolerations = tuple(_toleration(t) for t in raw.get("tolerations", []))
    return GpuPool(
        gpus=raw.get("gpus", 0),
        node_selector=dict(raw.get("nodeSelector", base.node_selector)),
        tolerations=tolerations or base.tolerations,
    )


def _storage(raw: dict[str, Any]) -> Storage:
    pre = raw.get("preprovisioned", {})
    base = Storage(mode="dynamic", classes=())
    return Storage(
        mode=raw.get("mode", "dynamic"),
        classes=tuple(
            StorageClassSpec(
                name=c["name"],
                tier=c["tier"],
                encrypted=c["encrypted"],
                max_grade=c["maxGrade"],
                default=c.get("default", False),
                provisioner=c.get("provisioner"),
                parameters=dict(c.get("parameters", {})),
            )
            for c in raw["classes"]
        ),
        volumes_per_class=pre.get("volumesPerClass", base.volumes_per_class),
        volume_size=str(pre.get("size", base.volume_size)),
        host_path_root=pre.get("hostPathRoot", base.host_path_root),
    )
