"""The storage rules of the stack configuration: classes that can hold what they claim (encryption for data
above 一般, one default, mode-specific keys), and backend volumes that fit the pre-provisioned volumes.
Checked by cityhub.config.rule_problems before anything is built or changed."""

from __future__ import annotations

from typing import Any

from cityhub.config_model import Storage
from cityhub.config_schema import ConfigProblem, key_path
from cityhub_api import registry, units


def storage_problems(storage: dict[str, Any] | None) -> list[ConfigProblem]:
    if storage is None:
        return []
    problems = []
    mode = storage.get("mode", "dynamic")
    defaults = [i for i, c in enumerate(storage["classes"]) if c.get("default")]
    for i in defaults[1:]:
        problems.append(
            ConfigProblem(
                key_path(["storage", "classes", i, "default"]),
                f"only one class may be the default; storage.classes[{defaults[0]}] already is",
            )
        )
    for i, c in enumerate(storage["classes"]):
        at = ["storage", "classes", i]
        if c["maxGrade"] != "一般" and not c["encrypted"]:
            problems.append(
                ConfigProblem(
                    key_path([*at, "encrypted"]),
                    f"class {c['name']!r} may hold {c['maxGrade']} data, which must be encrypted at rest; "
                    "set encrypted: true or lower maxGrade to 一般",
                )
            )
        if mode == "dynamic" and "provisioner" not in c:
            problems.append(
                ConfigProblem(
                    key_path([*at, "provisioner"]),
                    "is required when storage.mode is dynamic (name the cluster's CSI provisioner), "
                    "or set storage.mode: preprovisioned",
                )
            )
        if mode == "preprovisioned" and ("provisioner" in c or "parameters" in c):
            problems.append(
                ConfigProblem(
                    key_path(at),
                    "provisioner/parameters apply only to storage.mode dynamic; "
                    "remove them or switch the mode",
                )
            )
    return problems


# --- building typed values


def backend_volume_problems(raw: dict[str, Any]) -> list[ConfigProblem]:
    """Pre-provisioned volumes all have one size: a backend's claim for more never binds, its pod stays
    Pending and `pulumi up` waits for it until it times out. Refused here instead, naming the setting."""
    storage, backends = raw.get("storage") or {}, raw.get("backends") or {}
    if storage.get("mode") != "preprovisioned" or not backends.get("deploy"):
        return []
    size = str(
        (storage.get("preprovisioned") or {}).get("size", Storage(mode="dynamic", classes=()).volume_size)
    )
    types = registry.component_types()
    problems = []
    for name in backends["deploy"]:
        setting = (
            (types[name].backend_settings.get("properties") or {}).get("storageSize")
            if name in types
            else None
        )
        want = (backends.get(name) or {}).get("storageSize") or (setting or {}).get("default")
        if want and units.parse("quantity", want) > units.parse("quantity", size):
            problems.append(
                ConfigProblem(
                    key_path(["backends", name, "storageSize"]),
                    f"{want} does not fit the pre-provisioned volumes ({size}, cityhub:storage."
                    f"preprovisioned.size); set it to {size} or less, or make the volumes larger",
                )
            )
    return problems
