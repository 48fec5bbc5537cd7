"""wrk (hack/peers/wrk.sh) as bench/peer_gateway.py drives it: a Lua script per side, fixed-duration runs.

    script(path, body, headers) -> the Lua file: POSTs `body` with `headers` on every request, and at the
                                   end prints one JSON line (requests, errors, latency percentiles in µs)
    run(wrk, url, script, connections, seconds) -> Run
    cpu_seconds(pids) -> user+system CPU seconds of those processes (for CPU per request of each server)

wrk is a closed loop: each of its `connections` keep-alive connections sends the next request when the
answer to the last one arrived, so concurrency 1 is sequential calls and 32 is 32 clients at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cityhub.paths import ToolMissingError

LUA = """\
-- Written by bench/peer_gateway_wrk.py: a V2 inference POST with the side's headers on every request.
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk": 1, "requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%.1f, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk_binary() -> Path:
    found = shutil.which("wrk")
    if found is None:
        raise ToolMissingError("wrk is not installed: run hack/peers/wrk.sh (Debian package wrk)")
    return Path(found)


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    lines = [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    text = body.decode()
    assert "]==]" not in text
    path.write_text(LUA % {"body": text, "headers": "\n".join(lines)})
    return path


@dataclass(frozen=True)
class Run:
    connections: int
    seconds: float
    requests: int
    errors: dict[str, int]
    """wrk's error counts that are not 0: connect, read, write, timeout (socket errors) and status (answers
    with a status over 399)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(wrk: Path, url: str, lua: Path, connections: int, seconds: float) -> Run:
    """One wrk run of `seconds` at `connections` (one wrk thread: the load generator's own CPU stays small on
    a 2-core machine, and a thread drives tens of thousands of calls a second, far above any side here)."""
    argv = [str(wrk), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    argv += ["-s", str(lua), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith('{"wrk"')), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-800:]}\n{out.stderr[-800:]}")
    d = json.loads(line)
    errors = {k: d[k] for k in ("connect", "read", "write", "status", "timeout") if d[k]}
    return Run(
        connections=connections,
        seconds=d["duration_us"] / 1e6,
        requests=d["requests"],
        errors=errors,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        mean_ms=d["mean_us"] / 1000,
        max_ms=d["max_us"] / 1000,
    )


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds so far of `pids` (each alive one; /proc/<pid>/stat fields 14 and 15)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS
