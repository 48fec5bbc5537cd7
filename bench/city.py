"""A synthetic city of N departments for benchmarks: valid codes, every level, zone and data grade."""

from __future__ import annotations

from typing import Any

from cityhub.config_codes import make_credit_code

CITY_CODE = "330100"
DISTRICTS = {"330102": "东城区", "330106": "西湖区"}
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ZONES = ("egov", "internet", "private")
GRADES = ("一般", "重要", "核心")


def org_code(seq: int) -> str:
    """A 9-character organisation code (GB 11714) with its check character."""
    body = f"{seq:08d}"
    check = 11 - sum(int(c) * w for c, w in zip(body, ORG_CODE_WEIGHTS, strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(check, str(check))


def department(i: int) -> dict[str, Any]:
    level = ("市", "区", "街道")[i % 3]
    division = CITY_CODE if level == "市" else list(DISTRICTS)[i % 2]
    zone = ZONES[i % 3]
    grade = GRADES[(i // 3) % 3]
    if zone == "internet" and grade == "核心":
        grade = "重要"  # core data never sits in a public zone
    dept: dict[str, Any] = {
        "slug": f"dept-{i:03d}",
        "name": f"第{i}委办局",
        "creditCode": make_credit_code("11" + division + org_code(4_000_000 + i)),
        "level": level,
        "divisionCode": division,
        "zone": zone,
        "dataGrade": grade,
        "quota": {"cpu": 4, "memory": "8Gi", "pods": 40, "storage": "20Gi"},
    }
    if i % 5 == 0:
        dept["emergencyResponder"] = True
        dept["emergencyQuota"] = {"cpu": 16, "memory": "32Gi", "pods": 160}
    return dept


def city_config(departments: int) -> dict[str, Any]:
    """The `config:` block of a stack file (keys with their `cityhub:` prefix)."""
    raw: dict[str, Any] = {
        "city": "示例市",
        "divisionCode": CITY_CODE,
        "mode": "normal",
        "districts": [{"code": c, "name": n} for c, n in DISTRICTS.items()],
        "zones": [
            {"slug": "egov", "name": "政务外网"},
            {"slug": "internet", "name": "互联网区", "public": True},
            {"slug": "private", "name": "专网"},
        ],
        "flows": [{"from": "internet", "to": "egov", "ports": [443]}, {"from": "egov", "to": "private"}],
        "sharedServices": [
            {"name": "identity", "displayName": "统一身份认证", "zones": list(ZONES)},
            {"name": "messaging", "displayName": "数据传输与事件流转", "zones": ["egov", "private"]},
        ],
        "gpuPool": {"gpus": 4},
        "storage": {
            "mode": "preprovisioned",
            "preprovisioned": {"volumesPerClass": 2, "size": "10Gi"},
            "classes": [
                {
                    "name": "cityhub-standard",
                    "tier": "standard",
                    "encrypted": False,
                    "maxGrade": "一般",
                    "default": True,
                },
                {"name": "cityhub-encrypted", "tier": "performance", "encrypted": True, "maxGrade": "核心"},
            ],
        },
        "departments": [department(i) for i in range(departments)],
    }
    return {f"cityhub:{key}": value for key, value in raw.items()}
