"""The inference gateway vs MLServer direct vs an nginx prototype of its data path, under wrk (issue 17, 2).

    .venv/bin/python bench/peer_gateway.py                   # 10 repeats x 5 s per side and concurrency
    .venv/bin/python bench/peer_gateway.py --quick           # 1 repeat x 2 s (the CI test runs this)
    .venv/bin/python bench/peer_gateway.py --json bench/results-peer-gateway.json

Needs component_types/inference/install.sh (MLServer, model store), hack/peers/wrk.sh and hack/peers/nginx.sh.
Starts one MLServer, the cityhub gateway (component_types/inference/local.py) and nginx
(bench/peer_gateway_nginx.py) on free loopback ports, creates one endpoint through the driver (as the
operator would: model loaded on the server, route file with the key's hash), renders nginx's config from
that route file, then runs wrk (bench/peer_gateway_wrk.py) with the same V2 infer body against

    direct    MLServer's /v2/models/<model>/infer, no key
    gateway   the gateway's /v2/models/<department>.<name>/infer with the key (path allow-list, route, key
              hash, rate limit, concurrency slots, proxy)
    nginx     the same URL and key on nginx (raw-path checks, route map, njs key hash, limit_req/limit_conn,
              proxy_pass with keep-alive upstream)

at concurrency 1 and 32, a fixed duration per run, the sides interleaved and their order rotated each repeat
so the machine's drift hits all alike. Prints per side the medians over repeats of p50, p99 and calls/s,
CPU per call of the proxy and of MLServer (user+system seconds from /proc over calls: steadier than wall
time on a loaded host), and the medians of the per-repeat ratios to direct. Stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cityhub_operator.driver import Request
from peer_gateway_nginx import Nginx, nginx_binary
from peer_gateway_wrk import Run, cpu_seconds, run, script, wrk_binary

from cityhub_api.settings import cache_dir
from component_types.inference import local
from component_types.inference.driver import create_driver
from component_types.inference.gateway_limits import GatewayLimits
from component_types.inference.routes import RouteFiles

BODY = json.dumps(
    {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [8, 1, 0, 0]}]}
).encode()
SIDES = ("direct", "gateway", "nginx")
CONCURRENCY = (1, 32)
RPM = 1_000_000
"""The endpoint's requestsPerMinute: far above what the machine serves, so no call is refused (wrk counts
any 4xx/5xx as an error and the bench fails on one) while both proxies still run their limiter per call."""
LIMITS = GatewayLimits(max_concurrent_endpoint=64, max_concurrent_department=64)
"""Both proxies' limits: the defaults, except room for 32 concurrent calls of one endpoint (default 16)."""


def endpoint(env: dict[str, str]) -> tuple[str, str, str]:
    """One endpoint through the driver: (its key, its model's name on MLServer, its public inferUrl)."""

    async def ensure() -> tuple[str, str, str]:
        driver = create_driver(env)
        request = Request(
            "dept-jiaotong",
            "flow",
            "bench-uid",
            "dept-jiaotong",
            {"model": "traffic-flow"},
            {"requestsPerMinute": RPM},
            plan="cpu-standard",
            offering="inference",
        )
        try:
            result = await driver.ensure(request)
        finally:
            await driver.close()
        return result.credentials["apiKey"], result.backend["model"], result.endpoints["inferUrl"]

    return asyncio.run(ensure())


def post(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=BODY, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_sides(urls: dict[str, str], key: str) -> None:
    """Every side answers the same outputs; both proxies refuse a call without a key (401) and with another
    key (403): the comparison is between proxies that really check."""
    answers = {}
    for side, url in urls.items():
        headers = {"Content-Type": "application/json"}
        if side != "direct":
            for bad, want in (({}, 401), ({"Authorization": "Bearer chk_not-the-key"}, 403)):
                status, _ = post(url, {**headers, **bad})
                assert status == want, f"{side} answered {status} to a call with {bad or 'no key'} ({want})"
            headers["Authorization"] = f"Bearer {key}"
        status, body = post(url, headers)
        assert status == 200, f"{side} answered {status}: {body[:300]!r}"
        answers[side] = json.loads(body)["outputs"]
    assert all(a == answers["direct"] for a in answers.values()), f"the sides disagree: {answers}"


def measure(
    wrk: Path,
    scripts: dict[str, Path],
    urls: dict[str, str],
    pids: dict[str, list[int]],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    for side in SIDES:  # warm-up: connections, upstream keep-alive pools, MLServer's code paths
        run(wrk, urls[side], scripts[side], max(CONCURRENCY), args.warmup)
    rows: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for connections in CONCURRENCY:
            order = SIDES[rep % len(SIDES) :] + SIDES[: rep % len(SIDES)]
            for side in order:
                before = {name: cpu_seconds(p) for name, p in pids.items()}
                r = run(wrk, urls[side], scripts[side], connections, args.seconds)
                used = {name: cpu_seconds(p) - before[name] for name, p in pids.items()}
                rows.append(row(rep, side, r, used))
                if not args.quiet or r.errors:
                    print(
                        f"  rep {rep} c={connections:<2} {side:<7} {r.rps:7.0f}/s p50 {r.p50_ms:6.2f} ms "
                        f"p99 {r.p99_ms:6.2f} ms" + (f" ERRORS {r.errors}" if r.errors else ""),
                        file=sys.stderr,
                    )
    return rows


def row(rep: int, side: str, r: Run, used: dict[str, float]) -> dict[str, Any]:
    proxy = used.get(side, 0.0)
    return {
        "repeat": rep,
        "side": side,
        "concurrency": r.connections,
        "seconds": round(r.seconds, 3),
        "requests": r.requests,
        "errors": sum(r.errors.values()),
        "error_kinds": r.errors,
        "rps": round(r.rps, 1),
        "p50_ms": r.p50_ms,
        "p90_ms": r.p90_ms,
        "p99_ms": r.p99_ms,
        "mean_ms": round(r.mean_ms, 3),
        "max_ms": r.max_ms,
        "proxy_cpu_us_per_call": round(proxy / r.requests * 1e6, 1) if r.requests else None,
        "mlserver_cpu_us_per_call": round(used["mlserver"] / r.requests * 1e6, 1) if r.requests else None,
    }


def paired(rows: list[dict[str, Any]], c: int, side: str, base: str, key: str) -> list[float]:
    """`side`'s `key` over `base`'s, per repeat: the two ran back to back, so the host's load of the moment
    hits both; the median of these is steadier than the ratio of two medians on a host whose load swings."""
    out = []
    for rep in sorted({r["repeat"] for r in rows}):
        mine = {r["side"]: r[key] for r in rows if r["repeat"] == rep and r["concurrency"] == c}
        if side in mine and base in mine and mine[base]:
            out.append(mine[side] / mine[base])
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """concurrency → side → medians over repeats, and the medians of the paired ratios to direct (and of the
    gateway to nginx), with their spread (min, max) over the repeats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in CONCURRENCY:
        per: dict[str, dict[str, Any]] = {}
        for side in SIDES:
            mine = [r for r in rows if r["concurrency"] == c and r["side"] == side]
            per[side] = {
                k: round(statistics.median(r[k] for r in mine), 3)
                for k in ("p50_ms", "p99_ms", "rps", "proxy_cpu_us_per_call", "mlserver_cpu_us_per_call")
            }
            per[side]["runs"] = len(mine)
            per[side]["calls"] = sum(r["requests"] for r in mine)
            per[side]["errors"] = sum(r["errors"] for r in mine)
        for side, base, label in (
            ("gateway", "direct", ""),
            ("nginx", "direct", ""),
            ("gateway", "nginx", "_vs_nginx"),
        ):
            for key, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("rps", "rps")):
                ratios = paired(rows, c, side, base, key)
                per[side][f"{name}_ratio{label}"] = round(statistics.median(ratios), 3)
                per[side][f"{name}_ratio{label}_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
        out[str(c)] = per
    return out


def goals(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for c, per in summary.items():
        for side in ("gateway", "nginx"):
            s = per[side]
            lat = "met" if s["p50_ratio"] <= 1.2 else "missed"
            thr = "met" if s["rps_ratio"] >= 0.9 else "missed"
            lines.append(
                f"- {side}, concurrency {c}: latency {s['p50_ratio']:.2f}x direct at p50 "
                f"({s['p99_ratio']:.2f}x at p99), goal <= 1.2x {lat}; throughput {s['rps_ratio']:.2f}x "
                f"direct, goal >= 0.9x {thr}"
            )
        g = per["gateway"]
        lines.append(
            f"- gateway / nginx, concurrency {c}: p50 {g['p50_ratio_vs_nginx']:.2f}x, calls/s "
            f"{g['rps_ratio_vs_nginx']:.2f}x; proxy CPU per call {g['proxy_cpu_us_per_call']:.0f} µs vs "
            f"{per['nginx']['proxy_cpu_us_per_call']:.0f} µs"
        )
    return lines


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        "| concurrency | side | p50 ms | p99 ms | calls/s | calls (errors) | proxy CPU µs/call "
        "| MLServer CPU µs/call | p50 / direct | p99 / direct | calls/s / direct |"
    )
    lines = [head, "|" + "---|" * 11]
    for c, per in summary.items():
        for side in SIDES:
            s = per[side]
            ratios = (
                ("—", "—", "—")
                if side == "direct"
                else (f"{s['p50_ratio']:.2f}", f"{s['p99_ratio']:.2f}", f"{s['rps_ratio']:.2f}")
            )
            proxy = "—" if side == "direct" else f"{s['proxy_cpu_us_per_call']:.0f}"
            lines.append(
                f"| {c} | {side} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['rps']:.0f} "
                f"| {s['calls']} ({s['errors']}) | {proxy} "
                f"| {s['mlserver_cpu_us_per_call']:.0f} | {' | '.join(ratios)} |"
            )
    return "\n".join(lines)


def complaints(log: Path, marker: str, most: int = 20) -> list[str]:
    """The first `most` lines of `log` holding `marker` (a proxy's upstream errors, when wrk saw errors)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines if marker in line][:most]


def versions(wrk: Path, nginx: Path, mlserver: Path) -> dict[str, str]:
    def first(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else ""

    return {
        "wrk": first([str(wrk), "--version"]),
        "nginx": first([str(nginx), "-v"]),
        "mlserver": first([str(mlserver), "--version"]),
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s per side and concurrency")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of one wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk per side before measuring")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--quiet", action="store_true", help="no line per run on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds, args.warmup = 1, 2.0, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk, nginx_bin = wrk_binary(), nginx_binary()
    cache = cache_dir()
    mlserver = local.mlserver_binary(cache)
    with tempfile.TemporaryDirectory(prefix="peer-gateway-") as tmp:
        directory = Path(tmp)
        secret_file = directory / "secret"
        secret_file.write_text(secrets.token_urlsafe(48))
        server = local.MLServer(directory, mlserver)
        gateway = local.Gateway(directory, directory / "routes", server.url, limits=LIMITS)
        nginx = Nginx(directory / "nginx", LIMITS)
        try:
            server.start()
            gateway.start()
            env = local.operator_env(server, gateway, local.model_store(cache), secret_file)
            env["CITYHUB_INFERENCE_GPU_QUOTA"] = "*=0"  # no cluster here: quotas from a table (GPUs only)
            key, model, infer_url = endpoint(env)
            nginx.start(RouteFiles(gateway.routes).all().values())
            urls = {
                "direct": f"{server.url}/v2/models/{model}/infer",
                "gateway": infer_url,
                "nginx": infer_url.replace(gateway.url, nginx.url),
            }
            check_sides(urls, key)
            json_type = {"Content-Type": "application/json"}
            auth = {**json_type, "Authorization": f"Bearer {key}"}
            scripts = {
                side: script(directory / f"{side}.lua", BODY, json_type if side == "direct" else auth)
                for side in SIDES
            }
            assert server.record and gateway.record
            pids = {"mlserver": [server.record.pid], "gateway": [gateway.record.pid], "nginx": nginx.pids()}
            rows = measure(wrk, scripts, urls, pids, args)
            tools = versions(wrk, nginx_bin, mlserver)
        finally:
            nginx.stop()
            gateway.stop()
            server.stop()
            warnings = complaints(gateway.log, "WARNING") + complaints(
                nginx.directory / "error.log", "[error]"
            )
    summary = summarize(rows)
    result = {
        "bench": "peer_gateway",
        "date": datetime.date.today().isoformat(),
        "host": f"{platform.node()} ({len(os.sched_getaffinity(0))} cores)",
        "quick": args.quick,
        "repeats": args.repeats,
        "seconds_per_run": args.seconds,
        "concurrency": list(CONCURRENCY),
        "limits": {"requests_per_minute": RPM, **LIMITS.__dict__},
        "versions": tools,
        "summary": summary,
        "goals": goals(summary),
        "proxy_log_errors": warnings,
        "runs": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(table(summary))
    print()
    print("\n".join(result["goals"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
