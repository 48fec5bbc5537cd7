"""Benchmark: what a preview and a no-op `up` of the hub program cost with each lever, side by side.

    .venv/bin/python bench/stack_levers.py --departments 200 --repeat 2 --out bench/results-stack-200.json
    .venv/bin/python bench/stack_levers.py --departments 50 --variants preview preview-p32 --backends file

One stack of N departments (bench/city.py) is created once (checkpoints skipped: setup, not measurement);
then every variant runs once per round, rounds interleaved (A B C A B C …) so that other load on the machine
falls on every variant alike. Each variant must find nothing to change (`--expect-no-changes`).

--backends postgres: the same state is imported into Pulumi's PostgreSQL DIY backend (`postgres://`, a
local PostgreSQL started with component_types/maps/local.py's PostgisServer) and its variants run against
that backend, interleaved with the file backend's.

Runs against $KUBECONFIG if set (the stack is destroyed afterwards), else against a private embedded
cluster that is brought down afterwards (no destroy needed: its data goes with it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack_bench import project, pulumi

from cityhub import embedded_cluster, paths
from cityhub.cli import UP_ARGS
from cityhub.pulumi_env import pulumi_env

NO_OP = ("--expect-no-changes",)
CITYHUB_UP = ("up", "--yes", "--refresh", "--continue-on-error", *NO_OP)
"""What `cityhub up` ran before this benchmark: a refreshing preview, then the update (refreshing again)."""

VARIANTS: dict[str, tuple[str, ...]] = {
    "preview": ("preview", *NO_OP),
    "preview-p2": ("preview", "--parallel", "2", *NO_OP),
    "preview-p32": ("preview", "--parallel", "32", *NO_OP),
    "up": ("up", "--yes", *NO_OP),
    "up-skip-preview": ("up", "--yes", "--skip-preview", *NO_OP),
    "cityhub-up-before": CITYHUB_UP,
    "cityhub-up-skip-preview": (*UP_ARGS, *NO_OP),
    "cityhub-up-skip-preview-p32": (*UP_ARGS, "--parallel", "32", *NO_OP),
}
"""Variant name -> pulumi arguments (the stack is appended)."""

BACKEND_VARIANTS = ("preview", "up-skip-preview")
"""The variants run against a second backend: what the backend changes is reading and writing state."""


def pulumi_out(root: Path, env: dict[str, str], *args: str) -> str:
    cmd = [str(paths.tool("pulumi")), "--non-interactive", "--cwd", str(root), *args, "--stack", "bench"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout


def count_resources(root: Path, env: dict[str, str]) -> int:
    state = json.loads(pulumi_out(root, env, "stack", "export"))
    return sum(
        1 for r in state["deployment"]["resources"] if r.get("custom") and "providers" not in r["type"]
    )


def stack_env(kubeconfig: str, backend_url: str) -> dict[str, str]:
    env = pulumi_env() | {
        "KUBECONFIG": kubeconfig,
        "PULUMI_BACKEND_URL": backend_url,
        "PULUMI_CONFIG_PASSPHRASE": "bench",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    return env


class PostgresBackend:
    """A local PostgreSQL holding Pulumi's state (the postgres:// DIY backend), stopped by its record."""

    def __init__(self) -> None:
        from component_types.maps.local import PostgisServer, scratch_directory

        self.server = PostgisServer(scratch_directory("cityhub-stack-pg-"), secrets.token_urlsafe(16))

    def start(self) -> str:
        self.server.start()
        return self.server.dsn().replace("postgresql://", "postgres://", 1) + "?sslmode=disable"

    def stop(self) -> None:
        print(f"postgres: {self.server.stop()}", flush=True)


def measure(
    departments: int, repeat: int, kubeconfig: str, workdir: Path, names: list[str], backends: list[str]
) -> dict[str, Any]:
    root = workdir / f"d{departments}"
    root.mkdir()
    project(root, departments)
    (root / "backend").mkdir()
    envs = {"file": stack_env(kubeconfig, (root / "backend").as_uri())}
    pulumi(root, envs["file"], "stack", "init")
    row: dict[str, Any] = {"departments": departments, "runs": {}}
    row["create_up"] = pulumi(root, envs["file"], "up", "--yes", "--skip-preview", setup=True)
    row["resources"] = count_resources(root, envs["file"])
    print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    postgres = PostgresBackend() if "postgres" in backends else None
    try:
        if postgres is not None:
            # The same state in the second backend: both stacks describe the one set of cluster objects.
            envs["postgres"] = stack_env(kubeconfig, postgres.start())
            pulumi(root, envs["postgres"], "stack", "init")
            export = workdir / "state.json"
            export.write_text(pulumi_out(root, envs["file"], "stack", "export"), encoding="utf-8")
            pulumi(root, envs["postgres"], "stack", "import", "--file", str(export))
        plan = [("file", n) for n in names]
        plan += [(b, n) for b in backends if b != "file" for n in names if n in BACKEND_VARIANTS]
        for i in range(repeat):
            for backend, name in plan:
                took = pulumi(root, envs[backend], *VARIANTS[name])
                key = name if backend == "file" else f"{name}@{backend}"
                row["runs"].setdefault(key, []).append(took)
                print(f"round {i + 1} {key}: {took:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        row["load_after"] = os.getloadavg()
    finally:
        if postgres is not None:
            postgres.stop()
    row["summary"] = {
        key: {
            "best": min(runs),
            "median": statistics.median(runs),
            "args": " ".join(VARIANTS[key.split("@")[0]]),
        }
        for key, runs in row["runs"].items()
    }
    return row


def table(row: dict[str, Any]) -> str:
    lines = ["| variant | pulumi arguments | best | median |", "| --- | --- | ---: | ---: |"]
    for key, s in row["summary"].items():
        lines.append(f"| {key} | `{s['args']}` | {s['best']:.1f} s | {s['median']:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--departments", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--backends", nargs="+", choices=("file", "postgres"), default=["file", "postgres"])
    parser.add_argument("--out", type=Path, help="write the row as JSON here")
    ns = parser.parse_args(argv)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cityhub-levers-") as tmp:
        workdir = Path(tmp)
        kubeconfig = os.environ.get("KUBECONFIG")
        own_cluster = not kubeconfig
        if own_cluster:
            os.environ["CITYHUB_STATE"] = str(workdir / "state")
            if embedded_cluster.main(["up"]) != 0:
                return 1
            kubeconfig = str(workdir / "state" / "cluster" / "kubeconfig")
        try:
            row = measure(ns.departments, ns.repeat, str(kubeconfig), workdir, ns.variants, ns.backends)
            if not own_cluster:
                env = stack_env(str(kubeconfig), (workdir / f"d{ns.departments}" / "backend").as_uri())
                pulumi(workdir / f"d{ns.departments}", env, "destroy", "--yes", "--skip-preview", setup=True)
        finally:
            if own_cluster:
                embedded_cluster.main(["down"])
    row |= {"started": started, "cpus": os.cpu_count(), "load_before": load_before}
    print(table(row))
    if ns.out:
        ns.out.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
