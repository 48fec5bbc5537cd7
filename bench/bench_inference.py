"""Inference latency through the gateway (auth, rate limit, proxy) versus a direct call to MLServer.

    .venv/bin/python bench/bench_inference.py [--calls 300] [--warmup 30]

Starts a private MLServer and gateway on free ports of 127.0.0.1 (component_types/inference/local.py), loads
the traffic-flow model for one endpoint through the driver (as the operator would), then makes sequential V2
infer calls (one row) both ways with keep-alive connections and prints the medians, p90s and the overhead
ratio (gateway median / direct median). Needs component_types/inference/install.sh (MLServer, model store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from cityhub_operator.driver import Request

from cityhub_api.settings import cache_dir
from component_types.inference import local
from component_types.inference.driver import create_driver

BODY = json.dumps(
    {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [8, 1, 0, 0]}]}
).encode()


async def timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=BODY, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        out.append(time.perf_counter() - started)
    return out


async def measure(env: dict[str, str], server_url: str, calls: int, warmup: int) -> dict[str, float]:
    driver = create_driver(env)
    request = Request(
        "dept-jiaotong",
        "flow",
        "bench-uid",
        "dept-jiaotong",
        {"model": "traffic-flow"},
        {"requestsPerMinute": 1_000_000},
        plan="cpu-standard",
        offering="inference",
    )
    result = await driver.ensure(request)
    headers = {"Content-Type": "application/json"}
    auth = {**headers, "Authorization": f"Bearer {result.credentials['apiKey']}"}
    # The model's name on the shared server (naming.object_name), not the public <department>.<name>.
    direct_url = f"{server_url}/v2/models/{result.backend['model']}/infer"
    try:
        async with aiohttp.ClientSession() as session:
            await timed(session, direct_url, headers, warmup)
            await timed(session, result.endpoints["inferUrl"], auth, warmup)
            direct, via = [], []
            for _ in range(calls // 50):  # interleaved, so drift of the machine hits both alike
                direct += await timed(session, direct_url, headers, 50)
                via += await timed(session, result.endpoints["inferUrl"], auth, 50)
    finally:
        await driver.delete(request)
        await driver.close()

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[int(p * (len(xs) - 1))] * 1000

    return {
        "calls": len(direct),
        "direct_median_ms": statistics.median(direct) * 1000,
        "direct_p90_ms": q(direct, 0.9),
        "gateway_median_ms": statistics.median(via) * 1000,
        "gateway_p90_ms": q(via, 0.9),
        "overhead_ratio": statistics.median(via) / statistics.median(direct),
        "overhead_median_ms": (statistics.median(via) - statistics.median(direct)) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    cache = cache_dir()
    binary = local.mlserver_binary(cache)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        directory = Path(tmp)
        secret_file = directory / "secret"
        secret_file.write_text(secrets.token_urlsafe(48))
        server = local.MLServer(directory, binary).start()
        gateway = local.Gateway(directory, directory / "routes", server.url)
        try:
            gateway.start()
            env = local.operator_env(server, gateway, local.model_store(cache), secret_file)
            env["CITYHUB_INFERENCE_GPU_QUOTA"] = "*=0"  # no cluster here: quotas from a table (GPUs only)
            row = asyncio.run(measure(env, server.url, max(args.calls, 50), args.warmup))
        finally:
            gateway.stop()
            server.stop()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
