"""Chaos at scale (issue 15): requests of every type created in waves while the operator, the API server and
etcd, every backend and the operator↔API-server network fail; then every invariant is checked against the
backends' own inventories.

    .venv/bin/python bench/chaos.py                     # 1000 requests over 50 departments, every fault
    .venv/bin/python bench/chaos.py --short             # what tests/integration/test_chaos.py runs (~60)
    .venv/bin/python bench/chaos.py --requests 400 --seed 7 --json out.json --keep

Everything runs in a private state directory (CITYHUB_STATE=<work>/state): the embedded cluster, every
type's local backend (cityhub.local_operator.start_backends, as `cityhub operator start` starts them) and
`python -m cityhub_operator` serving them all, its kubeconfig pointing at a proxy in this process
(chaos_proxy.py) in front of the API server (the run's own calls to it, retried while it restarts, are in
chaos_api.py). The workload (chaos_workload.py, where the mix is explained) is created in waves; the faults
(chaos_faults.py) start at seeded random times within the fault window:

    operator-kill     SIGKILL, restarted 3 s later (--kills, default 5)
    cluster-restart   etcd and kube-apiserver SIGKILLed, restarted by `cluster up` (--cluster-restarts, 1)
    backend-down      each type's backend stopped, restarted on the same ports (--down, --down-hold 60 s)
    packet-drop       the proxy silently drops everything (--drops 1, --drop-hold 120 s); connections that
                      saw it stay dead unless --resume (chaos_proxy.py says why this is kopf's hard case)

After the last fault it waits until every request is settled (Ready, or unmet with a reason; deleted ones
gone) and one drift interval has passed, then reads each backend's inventory (chaos_inventory.py), probes
every Secret with its driver, and prints the table (chaos_report.py). Exit status 1 when an invariant broke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from chaos_api import create, delete, probe_work, retry, secret_counts, settled, snapshot
from chaos_backends import Backends
from chaos_faults import Chaos, Operator
from chaos_inventory import inventory, probe_all
from chaos_proxy import DropProxy
from chaos_report import Report
from chaos_workload import KINDS, Planned, departments, namespace_manifests, plan
from kubernetes import client

from cityhub import embedded_cluster, paths, supervisor
from cityhub import testkit as testing
from cityhub.local_operator import start_backends
from cityhub.supervisor import Supervisor
from cityhub_api.catalog import load_offerings, manifests

TYPES = tuple(KINDS)


@dataclass(frozen=True)
class Config:
    requests: int = 1000
    departments: int = 50
    waves: int = 10
    wave_interval: float = 30.0
    seed: int = 15
    kills: int = 5
    cluster_restarts: int = 1
    down: tuple[str, ...] = TYPES
    down_hold: float = 60.0
    drops: int = 1
    drop_hold: float = 120.0
    sever: bool = True
    window: tuple[float, float] = (30.0, 540.0)
    """Faults start at random seconds in this range (from the first wave)."""
    converge_timeout: float = 1200.0
    drift_interval: float = 120.0
    probe_interval: float = 120.0
    retry_max_delay: float = 30.0
    watch_server_timeout: int = 0
    """CITYHUB_WATCH_SERVER_TIMEOUT for the operator; 0 leaves the operator's default."""
    watch_client_timeout: float = 0.0

    @classmethod
    def short(cls) -> Config:
        """The CI version: ~60 requests over 6 departments, one of each fault but the cluster restart,
        shorter holds and watch timeouts so it ends within about four minutes."""
        return cls(
            requests=60,
            departments=6,
            waves=3,
            wave_interval=10.0,
            kills=1,
            cluster_restarts=0,
            down=("messaging",),
            down_hold=20.0,
            drop_hold=30.0,
            window=(5.0, 45.0),
            converge_timeout=150.0,
            drift_interval=20.0,
            probe_interval=60.0,
            retry_max_delay=10.0,
            watch_server_timeout=20,
            watch_client_timeout=30.0,
        )


@contextlib.contextmanager
def state_dir(directory: Path) -> Iterator[None]:
    """CITYHUB_STATE pointing at `directory` for the run (the cluster's and backends' launchers read it)."""
    old = os.environ.get("CITYHUB_STATE")
    os.environ["CITYHUB_STATE"] = str(directory)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CITYHUB_STATE", None)
        else:
            os.environ["CITYHUB_STATE"] = old


def api_server_port(admin: Path) -> int:
    """The port of the API server the admin kubeconfig names (the proxy's target)."""
    server = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1])


def write_kubeconfig(admin: Path, out: Path, port: int) -> None:
    """A copy of the admin kubeconfig whose server is the proxy (the certificate names 127.0.0.1, so TLS
    holds through it)."""
    doc = yaml.safe_load(admin.read_text())
    for c in doc["clusters"]:
        c["cluster"]["server"] = f"https://{supervisor.HOST}:{port}"
    out.touch(mode=0o600)
    out.write_text(yaml.safe_dump(doc))


def run(config: Config, work: Path) -> Report:
    """One chaos run in `work` (its state, logs and the operator's log stay there); returns the report."""
    began = time.monotonic()
    rng = random.Random(config.seed)
    depts = departments(config.departments)
    planned = plan(config.requests, depts, config.waves, config.seed)
    settings = {
        "seed": str(config.seed),
        "drift": f"{config.drift_interval:.0f}s",
        "probe": f"{config.probe_interval:.0f}s",
        "retry max": f"{config.retry_max_delay:.0f}s",
        "watch timeouts": (
            f"{config.watch_server_timeout}/{config.watch_client_timeout:.0f}s"
            if config.watch_server_timeout
            else "operator defaults"
        ),
        "drop": "sever" if config.sever else "resume",
    }
    report = Report(planned, [], settings)
    state = work / "state"
    with state_dir(state):
        if embedded_cluster.main(["up"]) != 0:
            raise RuntimeError("the embedded cluster did not start (its output is above)")
        admin = state / "cluster" / "kubeconfig"
        operator: Operator | None = None
        proxy: DropProxy | None = None
        try:
            testing.install_crds(admin)
            offerings = load_offerings()
            testing.apply(admin, manifests(offerings))
            testing.apply(admin, namespace_manifests(depts))
            backends, failed = start_backends(Supervisor(state / "processes"))
            if failed:
                raise RuntimeError(f"backends did not start: {', '.join(failed)}")
            op_kubeconfig = work / "operator-kubeconfig"
            proxy = DropProxy(supervisor.HOST, api_server_port(admin), sever=config.sever).start()
            write_kubeconfig(admin, op_kubeconfig, proxy.port)
            env = operator_env(config, backends)
            t0 = [time.monotonic()]

            def clock() -> float:
                return time.monotonic() - t0[0]

            operator = Operator(op_kubeconfig, env, work / "operator.log", clock).start()
            api = testing.api(admin)
            chaos = Chaos(operator, proxy, Backends(state, paths.cache_dir()), clock)
            chaos.schedule(
                rng,
                config.window,
                operator_kills=config.kills,
                cluster_restarts=config.cluster_restarts,
                down=config.down,
                down_hold=config.down_hold,
                drops=config.drops,
                drop_hold=config.drop_hold,
            )
            print(f"setup took {time.monotonic() - began:.0f}s; workload and faults start now", flush=True)
            t0[0] = time.monotonic()
            operator.health.clear()
            chaos.start(t0[0])
            run_waves(config, admin, api, planned, t0[0], clock)
            chaos.wait()
            report.faults = chaos.faults
            report.last_fault_end = chaos.last_end()
            report.problems += [
                f"fault {f.what} {f.target} failed: {f.error}" for f in chaos.faults if f.error
            ]
            converge(config, api, planned, report, clock)
            # Every Ready request gets one drift check after the last fault before the backends are read.
            time.sleep(max(0.0, report.last_fault_end + config.drift_interval + 5 - clock()))
            check(api, report, env, depts, {o.name: o.spec for o in offerings})
            report.operator_restarts = operator.planned
            report.unplanned_restarts = operator.unplanned
            report.max_rss = operator.max_rss
            report.health = list(operator.health)
        finally:
            if operator is not None:
                operator.stop()
            if proxy is not None:
                proxy.close()
            Supervisor(state / "processes").stop_all()
            embedded_cluster.main(["down"])
    report.wall = time.monotonic() - began
    report.log = log_summary(work / "operator.log")
    return report


def log_summary(log: Path) -> str:
    """Lines per severity of the operator's JSON log (every incarnation's), and Python tracebacks."""
    severities: Counter[str] = Counter()
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        try:
            severities[str(json.loads(line).get("severity", "?"))] += 1
        except ValueError:
            severities["not JSON"] += 1
    counts = ", ".join(f"{n} {k}" for k, n in severities.most_common())
    return f"{counts}; {text.count('Traceback')} tracebacks ({log})"


def operator_env(config: Config, backends: dict[str, Any]) -> dict[str, str]:
    env = {
        "CITYHUB_COMPONENTS": ",".join(sorted(backends)),
        "CITYHUB_LOG_FORMAT": "json",
        "CITYHUB_DRIFT_INTERVAL": str(config.drift_interval),
        "CITYHUB_PROBE_INTERVAL": str(config.probe_interval),
        "CITYHUB_RETRY_BASE_DELAY": "1",
        "CITYHUB_RETRY_MAX_DELAY": str(config.retry_max_delay),
        "CITYHUB_HEALTH_PORT": str(supervisor.free_port()),
        "CITYHUB_METRICS_PORT": str(supervisor.free_port()),
    }
    if config.watch_server_timeout:
        env["CITYHUB_WATCH_SERVER_TIMEOUT"] = str(config.watch_server_timeout)
        env["CITYHUB_WATCH_CLIENT_TIMEOUT"] = str(config.watch_client_timeout)
    for backend in backends.values():
        env.update(backend.operator_env)
    return env


def run_waves(
    config: Config, admin: Path, api: client.ApiClient, planned: list[Planned], t0: float, clock: Any
) -> None:
    last = max(max(p.wave for p in planned), max((p.delete_wave or 0) for p in planned))
    for wave in range(last + 1):
        time.sleep(max(0.0, t0 + wave * config.wave_interval - time.monotonic()))
        new = [p for p in planned if p.wave == wave]
        gone = [p for p in planned if p.delete_wave == wave]
        if new:
            create(admin, [p.manifest() for p in new])
        if gone:
            delete(api, gone)
        print(f"[{clock():6.0f}s] wave {wave}: {len(new)} created, {len(gone)} deleted", flush=True)


def converge(
    config: Config, api: client.ApiClient, planned: list[Planned], report: Report, clock: Any
) -> None:
    deadline = report.last_fault_end + config.converge_timeout
    summary, printed = "", 0.0
    while clock() < deadline:
        try:
            done, summary = settled(planned, snapshot(api))
        except Exception as e:  # the API server may still be catching up: asked again
            done, summary = False, f"({type(e).__name__})"
        if done:
            report.converged_after = max(0.0, clock() - report.last_fault_end)
            print(f"[{clock():6.0f}s] settled: {summary}", flush=True)
            return
        if clock() - printed > 30:
            print(f"[{clock():6.0f}s] waiting: {summary}", flush=True)
            printed = clock()
        time.sleep(5)
    print(f"[{clock():6.0f}s] NOT settled: {summary}", flush=True)


def check(
    api: client.ApiClient,
    report: Report,
    env: dict[str, str],
    depts: list[str],
    offerings: dict[str, dict[str, Any]],
) -> None:
    report.objects = retry("list requests", lambda: snapshot(api), 120)
    report.secrets = retry("list secrets", lambda: secret_counts(api, set(depts)), 120)
    candidates: dict[str, list[tuple[str, str]]] = {}
    for p in report.planned:
        candidates.setdefault(p.type_name, []).append(p.key)
    try:
        report.inventory = inventory(env, depts, candidates)
    except Exception as e:  # reported, and the rest is still checked
        report.problems.append(f"inventory could not be read: {type(e).__name__}: {e}")
    report.probes = probe_all(env, probe_work(api, report, offerings))


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--short", action="store_true", help="the CI version (tests/integration/test_chaos.py)"
    )
    parser.add_argument("--requests", type=int)
    parser.add_argument("--departments", type=int)
    parser.add_argument("--waves", type=int)
    parser.add_argument("--wave-interval", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--kills", type=int, help="operator SIGKILLs")
    parser.add_argument("--cluster-restarts", type=int)
    parser.add_argument("--down", help="comma-separated types whose backend goes down (or 'none')")
    parser.add_argument("--down-hold", type=float, help="seconds each backend stays down")
    parser.add_argument("--drops", type=int, help="packet-drop windows")
    parser.add_argument("--drop-hold", type=float, help="seconds each window lasts")
    parser.add_argument("--resume", action="store_true", help="connections that saw a drop resume after it")
    parser.add_argument("--window", help="START,END: seconds in which faults begin")
    parser.add_argument("--converge-timeout", type=float)
    parser.add_argument("--drift-interval", type=float)
    parser.add_argument("--work", type=Path, default=None, help="directory for state and logs (default: new)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    ns = parser.parse_args(argv)
    config = Config.short() if ns.short else Config()
    changes: dict[str, Any] = {
        k: getattr(ns, k)
        for k in (
            "requests",
            "departments",
            "waves",
            "wave_interval",
            "seed",
            "kills",
            "cluster_restarts",
            "down_hold",
            "drops",
            "drop_hold",
            "converge_timeout",
            "drift_interval",
        )
        if getattr(ns, k) is not None
    }
    if ns.down is not None:
        changes["down"] = () if ns.down == "none" else tuple(t for t in ns.down.split(",") if t)
        unknown = set(changes["down"]) - set(TYPES)
        if unknown:
            parser.error(f"--down: unknown {', '.join(sorted(unknown))}; types: {', '.join(TYPES)}")
    if ns.window:
        low, high = (float(x) for x in ns.window.split(","))
        changes["window"] = (low, high)
    if ns.resume:
        changes["sever"] = False
    return replace(config, **changes), ns


def main(argv: list[str] | None = None) -> int:
    config, ns = parse(argv)
    # SIGTERM (e.g. `timeout`) ends the run through its cleanup, so no server is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = ns.work or Path(tempfile.mkdtemp(prefix="cityhub-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o711)  # PostgreSQL runs as the postgres user and must reach its directory below
    print(f"chaos: {json.dumps(asdict(config))}\nwork directory {work}", flush=True)
    report = run(config, work)
    print("\n" + report.table())
    if ns.json:
        ns.json.write_text(json.dumps(report_json(report), indent=2))
    return 1 if report.failures() else 0


def report_json(report: Report) -> dict[str, Any]:
    return {
        "faults": [asdict(f) for f in report.faults],
        "converged_after_s": report.converged_after,
        "last_fault_end_s": report.last_fault_end,
        "counts": report.counts(),
        "operator_restarts": report.operator_restarts,
        "unplanned_restarts": report.unplanned_restarts,
        "max_rss_mib": round(report.max_rss / 2**20, 1),
        "health": report.health,
        "settings": report.settings,
        "wall_s": round(report.wall, 1),
        "operator_log": report.log,
        "failures": report.failures(),
    }


if __name__ == "__main__":
    sys.exit(main())
