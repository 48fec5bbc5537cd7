"""/metrics with 1000 provisioned components: scrape time and series count.

    .venv/bin/python bench/bench_metrics.py [--components 1000] [--departments 25] [--scrapes 50]

Fills the operator's real registry through outcomes.py and metrics.py as the operator would (every
component provisioned, probed, some incidents and feedback), serves it with prometheus_client's HTTP server
on a free loopback port and times full scrapes. Label sets are department x component type x offering, so
the series count depends on those, not on the number of requests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from typing import Any

import prometheus_client
from cityhub_operator import metrics
from cityhub_operator.outcomes import OUTCOMES, Feedback

from cityhub import supervisor

TYPES = {"messaging": "messaging", "identity": "identity", "maps": "maps", "inference": "inference"}
CONTROLLERS = {"messaging": "MessagingChannel", "identity": "IdentityClient", "maps": "MapLayer",
               "inference": "InferenceEndpoint"}  # fmt: skip


def body(department: str, ctype: str, index: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": department, "name": f"{ctype}-{index}", "uid": f"u{index}"},
        "spec": {"offering": TYPES[ctype]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def fill(components: int, departments: int) -> None:
    depts = [f"dept{i:02d}" for i in range(departments)]
    types = list(TYPES)
    feedback = Feedback(types)
    now = int(time.time())
    for i in range(components):
        dept, ctype = depts[i % departments], types[(i // departments) % len(types)]
        b = body(dept, ctype, i)
        controller = CONTROLLERS[ctype]
        metrics.RECONCILE_TOTAL.labels(controller, "success").inc()
        metrics.RECONCILE_TIME.labels(controller).observe(0.05)
        metrics.BACKEND_TIME.labels(controller, "ensure").observe(0.03)
        metrics.KUBERNETES_TIME.labels(controller, "secret").observe(0.01)
        OUTCOMES.provisioned(ctype, b, now - 3 - i % 40)
        OUTCOMES.condition(ctype, b, {})
        for ok in (True, True, i % 17 != 0, True):
            OUTCOMES.probed(ctype, b, ok)
            if ok:
                metrics.PROBES.labels(dept, ctype, TYPES[ctype], "success").inc()
                metrics.PROBE_TIME.labels(dept, ctype, TYPES[ctype]).observe(0.02)
                metrics.APDEX.labels(dept, ctype, TYPES[ctype], "satisfied").inc()
            else:
                metrics.PROBES.labels(dept, ctype, TYPES[ctype], "failure").inc()
        if i % 7 == 0:
            feedback.record(f"f{i}", dept, {"componentType": ctype, "rating": 1 + i % 5})
    for controller in CONTROLLERS.values():
        for result in ("error", "retry", "unmet"):
            metrics.RECONCILE_TOTAL.labels(controller, result)
        metrics.IN_FLIGHT.labels(controller)
        metrics.RETRIES.labels(controller)
        metrics.DRIFT_REPAIRS.labels(controller)
        metrics.BACKEND_TIME.labels(controller, "observe").observe(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--components", type=int, default=1000)
    parser.add_argument("--departments", type=int, default=25)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    fill(args.components, args.departments)
    port = supervisor.free_port()
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1")
    try:
        times, text = [], ""
        for _ in range(args.scrapes):
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            times.append(time.perf_counter() - started)
    finally:
        server.shutdown()
        thread.join(5)
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    ours = [line for line in samples if line.startswith("cityhub_")]
    result = {
        "components": args.components,
        "departments": args.departments,
        "component_types": len(TYPES),
        "scrape_seconds_median": round(statistics.median(times), 4),
        "scrape_seconds_p90": round(sorted(times)[int(0.9 * len(times)) - 1], 4),
        "series_total": len(samples),
        "series_cityhub": len(ours),
        "bytes": len(text.encode()),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
