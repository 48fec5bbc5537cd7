"""`cityhub`: the platform engineer's entry point.

cityhub cluster up|down|status     the embedded control plane (etcd, apiserver, ..., kwok)
cityhub up [--stack dev]           cluster (unless $KUBECONFIG names one) + `pulumi up`
cityhub destroy [--stack dev]      `pulumi destroy` of the stack
cityhub operator start|stop|status the operator and its backends as local processes (cluster in $KUBECONFIG
                                   or the embedded one)
cityhub pulumi ARGS...             the pinned Pulumi CLI in cityhub's offline environment
cityhub login USER                 sign in with the city's identity: a kubeconfig with short-lived tokens
cityhub token USER                 the exec credential kubectl runs (refreshes the token)
cityhub people add USER …          a person of the embedded default's identity, in a department's role
cityhub report --period YYYY-MM    运营评价 per department, JSON + HTML (+ PDF); --prices FILE adds 成本分摊
cityhub dashboard                  中枢能力仪表盘: the live hub dashboard (Prometheus + API server)
cityhub drill [--stack dev]        平急演练: emergency mode and back, timed and recorded
cityhub maturity [--prometheus URL] 成熟度: the self-assessment from live state (docs/maturity.md)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cityhub import cluster_reach, embedded_cluster, paths, stack_config
from cityhub.pulumi_env import pulumi_env
from cityhub_api.settings import Env


def _run(args: list[str], cwd: Path | None = None, capture: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [str(paths.tool("pulumi")), *args]
    return subprocess.run(
        cmd, cwd=cwd or paths.repo_root(), env=pulumi_env(), check=False, text=True, capture_output=capture
    )


def selected_stack() -> str | None:
    result = _run(["stack", "--show-name"], capture=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def run_pulumi(args: list[str], check: bool = True) -> int:
    """The pinned pulumi, offline; stack configuration from the working copy (cityhub.stack_config), so no
    command changes a tracked file."""
    if args[:2] == ["stack", "init"] and len(args) == 3:
        code = stack_config.init(args[2], lambda a, cwd: _run(a, cwd).returncode)
    else:
        if args[:2] == ["stack", "rm"] and "--preserve-config" not in args:
            args = [*args, "--preserve-config"]  # `stack rm` would delete stacks/Pulumi.<stack>.yaml
        if stack_config.command_of(args) in stack_config.WITH_CONFIG:
            stack = stack_config.stack_of(args) or selected_stack()
            if stack:
                args = stack_config.with_config_file(args, stack)
        code = _run(args).returncode
    if check and code != 0:
        raise SystemExit(f"cityhub: `pulumi {' '.join(args)}` failed with exit code {code}")
    return code


def select_stack(stack: str) -> None:
    if run_pulumi(["stack", "select", stack], check=False) != 0:
        run_pulumi(["stack", "init", stack])


UP_ARGS = ("up", "--yes", "--skip-preview", "--refresh", "--continue-on-error")
"""What `cityhub up` runs, before `--stack` and the user's extra arguments.

--skip-preview: with --yes nobody reads a preview before the update starts, and the update runs the program
and diffs every resource again, so the preview doubled the time of every `cityhub up` (a no-op one at 200
departments: bench/stack-200.md). A bad configuration still fails before anything is declared (the program
validates first). `cityhub pulumi preview` shows the plan; `cityhub up -- --skip-preview=false` restores it.
--refresh: the stack's state may describe a cluster that is gone (an embedded cluster recreated after
`cityhub cluster down`) or objects deleted out of band; reading the cluster first recreates them.
--continue-on-error: an edge cluster that cannot be reached fails only its own resources; the other
clusters are still brought up to date, and pulumi names the failed ones (exit code stays non-zero). A
refresh has no such option, so when a cluster does not answer, `cityhub up` leaves --refresh out
(cluster_reach.py)."""


def cmd_up(ns: argparse.Namespace) -> int:
    if Env().raw("KUBECONFIG") is None and embedded_cluster.main(["up"]) != 0:
        return 1
    select_stack(ns.stack)
    clusters = cluster_reach.stack_clusters(stack_config.sync(ns.stack))
    args = cluster_reach.up_args(UP_ARGS, clusters, paths.repo_root())
    return run_pulumi([*args, "--stack", ns.stack, *ns.pulumi_args], check=False)


def cmd_destroy(ns: argparse.Namespace) -> int:
    select_stack(ns.stack)
    return run_pulumi(["destroy", "--yes", "--stack", ns.stack, *ns.pulumi_args], check=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pulumi"]:
        return run_pulumi(argv[1:], check=False)
    if argv[:1] == ["cluster"]:
        return embedded_cluster.main(argv[1:])
    if argv[:1] in (["login"], ["token"], ["people"]):
        from cityhub import login

        return login.main(argv)
    if argv[:1] == ["operator"]:
        from cityhub import local_operator

        return local_operator.main(argv[1:])
    if argv[:1] == ["report"]:
        from cityhub.report import command

        return command.main(argv[1:])
    if argv[:1] == ["dashboard"]:
        from cityhub.dashboard import serve

        return serve.main(argv[1:])
    if argv[:1] == ["drill"]:
        from cityhub.drill import command as drill

        return drill.main(argv[1:])
    if argv[:1] == ["maturity"]:
        from cityhub.maturity import command as maturity

        return maturity.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="cityhub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("up", cmd_up), ("destroy", cmd_destroy)):
        p = sub.add_parser(name)
        p.add_argument("--stack", default="dev", help="stack name (config in stacks/Pulumi.<stack>.yaml)")
        p.add_argument("pulumi_args", nargs="*", help="extra arguments for pulumi, after --")
        p.set_defaults(func=func)
    sub.add_parser("cluster", help="cityhub cluster up|down|status")
    sub.add_parser("pulumi", help="run the pinned pulumi CLI offline")
    sub.add_parser("operator", help="cityhub operator start|stop|status")
    sub.add_parser("login", help="cityhub login USER: sign in with the city's identity")
    sub.add_parser("token", help="cityhub token USER: the exec credential kubectl runs")
    sub.add_parser("people", help="cityhub people add USER --department D --role R")
    sub.add_parser("report", help="cityhub report --period YYYY-MM [--prices FILE]: 运营评价, JSON HTML PDF")
    sub.add_parser("dashboard", help="cityhub dashboard: 中枢能力仪表盘, the live hub dashboard")
    sub.add_parser("drill", help="cityhub drill: 平急演练, emergency mode and back, timed and recorded")
    sub.add_parser("maturity", help="cityhub maturity: 成熟度 self-assessment from live state")
    ns = parser.parse_args(argv)
    return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
