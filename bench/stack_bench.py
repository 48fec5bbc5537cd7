"""Benchmark: `pulumi preview` and a no-op `pulumi up` of the hub program for 10, 50 and 200 departments.

    .venv/bin/python bench/stack_bench.py [--departments 10 50 200] [--repeat 3] [--out bench/results.json]
    .venv/bin/python bench/stack_bench.py --departments 50 --edges 0 3   # the hub alone, then with 3 edges
    .venv/bin/python bench/stack_bench.py --noop-up up   # no-op `up` as `pulumi up --yes` (the 11-21 figures)

--edges: each count is measured too; the edges are embedded clusters started beside the hub (`cityhub cluster
up --name edge-<i>`), the first two claiming the city's two districts (their 区/街道 departments move there),
the others a division with no department (their share of the stack is the system part alone).

Runs against $KUBECONFIG if set, else starts a private embedded cluster and stops it afterwards. Each size
gets its own copy of the project and its own file backend; the stack is created once (`up`, timed too,
without intermediate checkpoints), then measured with no changes, then destroyed. Times are wall-clock
seconds, best and median of --repeat. The no-op `up` is what `cityhub up` runs (cityhub.cli.UP_ARGS: no
preview, a refresh) unless --noop-up up asks for a plain `pulumi up --yes` (a preview, then the update).
Levers side by side, interleaved: bench/stack_levers.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from city import city_config

from cityhub import embedded_cluster, paths
from cityhub.cli import UP_ARGS
from cityhub.embedded_cluster.layout import layout
from cityhub.pulumi_env import pulumi_env


def pulumi(root: Path, env: dict[str, str], *args: str, setup: bool = False) -> float:
    """Run pulumi in `root`; return its wall time. Fails loudly: a benchmark of a failure is no benchmark."""
    cmd = [str(paths.tool("pulumi")), "--non-interactive", "--cwd", str(root), *args, "--stack", "bench"]
    if setup:
        # Creating and destroying the stack are setup, not what is measured. The file backend rewrites the
        # whole state after every step, so a 2,400-resource create costs O(N^2) in checkpoint writes
        # (50 departments: 132 s with checkpoints); skip them here to keep the benchmark short.
        env = env | {"PULUMI_SKIP_CHECKPOINTS": "true"}
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"pulumi {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return took


NOOP_UP: dict[str, tuple[str, ...]] = {"cityhub": UP_ARGS, "up": ("up", "--yes")}
"""--noop-up: the arguments of the measured no-op `up` (--expect-no-changes is added)."""

EDGE_DIVISIONS = ("330102", "330106", "330108", "330109", "330110", "330111", "330112", "330113")


def edge_clusters(count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"edge-{i + 1}",
            "role": "edge",
            "divisionCode": EDGE_DIVISIONS[i],
            "kubeconfig": str(layout(f"edge-{i + 1}").kubeconfig),
        }
        for i in range(count)
    ]


def project(root: Path, departments: int, edges: int = 0) -> None:
    repo = paths.repo_root()
    shutil.copy(repo / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(
        repo / "stacks", root / "stacks", ignore=shutil.ignore_patterns("__pycache__", "Pulumi.*.yaml")
    )
    (root / ".venv").symlink_to(repo / ".venv")
    config = city_config(departments)
    if edges:
        config["cityhub:clusters"] = [{"name": "hub", "role": "hub"}, *edge_clusters(edges)]
    stack = {"config": config}
    (root / "stacks" / "Pulumi.bench.yaml").write_text(
        yaml.safe_dump(stack, allow_unicode=True), encoding="utf-8"
    )


def measure(
    departments: int, repeat: int, kubeconfig: str, workdir: Path, edges: int = 0, noop_up: str = "cityhub"
) -> dict[str, Any]:
    root = workdir / f"d{departments}-e{edges}"
    root.mkdir()
    project(root, departments, edges)
    (root / "backend").mkdir()
    env = pulumi_env() | {
        "KUBECONFIG": kubeconfig,
        "PULUMI_BACKEND_URL": (root / "backend").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "bench",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    pulumi(root, env, "stack", "init")
    row: dict[str, Any] = {"departments": departments, "edges": edges}
    row["create_up"] = pulumi(root, env, "up", "--yes", "--skip-preview", setup=True)
    state = json.loads(
        subprocess.run(
            [str(paths.tool("pulumi")), "--cwd", str(root), "stack", "export", "--stack", "bench"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
    )
    row["resources"] = sum(
        1 for r in state["deployment"]["resources"] if r.get("custom") and "providers" not in r["type"]
    )
    previews = [pulumi(root, env, "preview", "--expect-no-changes") for _ in range(repeat)]
    noops = [pulumi(root, env, *NOOP_UP[noop_up], "--expect-no-changes") for _ in range(repeat)]
    row |= {
        "noop_up_args": " ".join(NOOP_UP[noop_up]),
        "preview_best": min(previews),
        "preview_median": statistics.median(previews),
        "noop_up_best": min(noops),
        "noop_up_median": statistics.median(noops),
    }
    row["destroy"] = pulumi(root, env, "destroy", "--yes", "--skip-preview", setup=True)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| departments | edges | k8s resources | create `up` | `preview` best / median "
        "| no-op `up` best / median | destroy |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['departments']} | {r.get('edges', 0)} | {r['resources']} | {r['create_up']:.1f} s "
            f"| {r['preview_best']:.1f} / {r['preview_median']:.1f} s "
            f"| {r['noop_up_best']:.1f} / {r['noop_up_median']:.1f} s | {r['destroy']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--departments", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--edges", type=int, nargs="+", default=[0], help="edge clusters beside the hub")
    parser.add_argument(
        "--noop-up", choices=list(NOOP_UP), default="cityhub", help="cityhub: `cityhub up`'s pulumi arguments"
    )
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    ns = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cityhub-bench-") as tmp:
        workdir = Path(tmp)
        kubeconfig = os.environ.get("KUBECONFIG")
        own_cluster = not kubeconfig
        if own_cluster:
            os.environ["CITYHUB_STATE"] = str(workdir / "state")
            if embedded_cluster.main(["up"]) != 0:
                return 1
            kubeconfig = str(workdir / "state" / "cluster" / "kubeconfig")
        edges = max(ns.edges)
        if edges and not own_cluster:
            raise SystemExit("--edges starts embedded edge clusters: run without $KUBECONFIG")
        try:
            for i in range(edges):
                if embedded_cluster.main(["up", "--name", f"edge-{i + 1}"]) != 0:
                    return 1
            rows = []
            for n in ns.departments:
                for e in ns.edges:
                    rows.append(measure(n, ns.repeat, str(kubeconfig), workdir, e, ns.noop_up))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            if own_cluster:
                embedded_cluster.main(["down", "--all"])
    print(table(rows))
    if ns.out:
        ns.out.write_text(
            json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
