"""Simulation: what one stack with 0 … 200 edge clusters asks of Pulumi and of the hub (issue 18's scale).

    .venv/bin/python bench/edges_model.py [--edges 0 3 10 50 200] [--out bench/results-edges-model.json]

A city of 10 districts and 50 departments (bench/city.py) whose edges are first its districts', then its
streets' (9-digit codes, one street office each, as a city giving each 街道 its own small cluster would have),
with the operator and the messaging, identity and maps backends deployed by the stack
(cityhub:operator.deploy, cityhub:backends.deploy). The whole hub program (components.hub.city_hubs) runs
under Pulumi's mocks — the same program `pulumi preview` runs, without the engine and the clusters — in a
fresh process per size, so its peak memory is its own. Per size: the stack configuration's size, the
resources declared (on the hub, per edge), the program's wall time and peak RSS, and what the hub then runs
and holds for its edges: operator Deployments and leaf connections into the hub's NATS (one per edge
department).
Real clusters stay out of it: bench/stack_bench.py --edges measures preview/up against 3 embedded edges, and
the time per resource it finds scales these counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from city import city_config, make_credit_code, org_code

DISTRICTS = {f"3301{i:02d}": f"第{i}区" for i in range(2, 12)}
"""Ten districts; bench/city.py's departments use the first two (330102, 330106 is renamed below)."""


def city(edges: int) -> dict[str, Any]:
    raw = {k.removeprefix("cityhub:"): v for k, v in city_config(50).items()}
    raw["districts"] = [{"code": c, "name": n} for c, n in {**DISTRICTS, "330106": "西湖区"}.items()]
    districts = sorted(d["code"] for d in raw["districts"])
    clusters: list[dict[str, Any]] = [{"name": "hub", "role": "hub"}]
    for i in range(edges):
        if i < len(districts):
            code = districts[i]
        else:
            street = i - len(districts)
            code = f"{districts[street % len(districts)]}{street // len(districts) + 1:03d}"
            raw["departments"].append(street_office(i, code))
        clusters.append(
            {
                "name": f"edge-{i + 1}",
                "role": "edge",
                "divisionCode": code,
                "context": f"edge-{i + 1}",
                "apiServer": f"https://edge-{i + 1}.city.example:6443",
            }
        )
    raw["clusters"] = clusters
    raw["operator"] = {"deploy": True}
    volume = {"storageSize": raw["storage"]["preprovisioned"]["size"]}
    raw["backends"] = {
        "deploy": ["messaging", "identity", "maps"],
        "maps": volume,
        "messaging": {
            **volume,
            "leafnodes": {"url": "nats-leaf://hub-leaf.city.example:7422"},
            "edge": {"operatorUrl": "nats://nats.{edge}.city.example:4222", "storageSize": "1Gi"},
        },
    }
    raw["backendsMasterKey"] = "m" * 48
    return raw


def street_office(i: int, code: str) -> dict[str, Any]:
    return {
        "slug": f"street-{i:03d}",
        "name": f"第{i}街道办事处",
        "creditCode": make_credit_code("11" + code[:6] + org_code(5_000_000 + i)),
        "level": "街道",
        "divisionCode": code,
        "zone": "egov",
        "dataGrade": "一般",
        "quota": {"cpu": 2, "memory": "4Gi", "pods": 20, "storage": "5Gi"},
    }


def one(edges: int) -> dict[str, Any]:
    """Run the program for `edges` edges under mocks, in this process."""
    from cityhub.config import load_config
    from tests.unit.test_edge_deployment import city as run_program

    raw = city(edges)
    config_bytes = len(
        yaml.safe_dump({"config": {f"cityhub:{k}": v for k, v in raw.items()}}, allow_unicode=True).encode()
    )
    t0 = time.perf_counter()
    config = load_config(raw)
    validated = time.perf_counter() - t0
    created = run_program(raw)  # validates again (a fraction of a second) and runs city_hubs under mocks
    took = time.perf_counter() - t0
    per_edge = [sum(1 for r in created if f"edge-{i + 1}-cluster" in r.provider) for i in range(edges)]
    hub = len(created) - sum(per_edge)
    on_edges = [d for d in config.departments if d.cluster != "hub"]
    return {
        "edges": edges,
        "departments": len(config.departments),
        "departments_on_edges": len(on_edges),
        "config_kib": round(config_bytes / 1024, 1),
        "validate_s": round(validated, 2),
        "program_s": round(took, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "resources": len(created),
        "hub_resources": hub,
        "per_edge_min": min(per_edge, default=0),
        "per_edge_max": max(per_edge, default=0),
        "edge_operator_deployments": sum(
            1
            for r in created
            if r.type.endswith(":Deployment") and r.k8s_name.startswith("cityhub-operator-")
        ),
        "hub_leaf_connections": len(on_edges),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| edges | departments (on edges) | config | resources (hub / per edge) | program under mocks | "
        "peak RSS | edge operators on the hub | leaf connections into the hub |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [
        f"| {r['edges']} | {r['departments']} ({r['departments_on_edges']}) | {r['config_kib']} KiB | "
        f"{r['resources']} ({r['hub_resources']} / {r['per_edge_min']}-{r['per_edge_max']}) | "
        f"{r['program_s']:.1f} s | {r['peak_rss_mib']:.0f} MiB | {r['edge_operator_deployments']} | "
        f"{r['hub_leaf_connections']} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edges", type=int, nargs="+", default=[0, 3, 10, 50, 200])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    ns = parser.parse_args(argv)
    if ns.one is not None:
        print(json.dumps(one(ns.one)))
        return 0
    rows = []
    for edges in ns.edges:
        run = subprocess.run(
            [sys.executable, __file__, "--one", str(edges)], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            raise SystemExit(f"{edges} edges failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if ns.out:
        ns.out.write_text(
            json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
