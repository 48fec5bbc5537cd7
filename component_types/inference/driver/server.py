"""Local processes of the embedded inference backend: the shared MLServer and the gateway.

    python -m component_types.inference.driver.server run --dir D [--port 8080] [--gateway-port 8090]

Both listen on 127.0.0.1 (free ports by default), are started in their own sessions and stopped by PID;
`kill()` simulates a crash. The MLServer runs from its own venv (<cache>/venvs/mlserver, built by
component_types/inference/install.sh) and loads every model-settings.json of its repository at start, so a restarted
server serves the endpoints it served before.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from component_types.inference.driver.settings import cache_dir


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mlserver_binary() -> Path:
    """CITYHUB_INFERENCE_MLSERVER_BIN, else <cache>/venvs/mlserver/bin/mlserver."""
    given = os.environ.get("CITYHUB_INFERENCE_MLSERVER_BIN")
    path = Path(given) if given else cache_dir(os.environ) / "venvs" / "mlserver" / "bin" / "mlserver"
    if not path.exists():
        raise FileNotFoundError(
            f"MLServer is not installed (expected {path}): run component_types/inference/install.sh"
        )
    return path


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class _Process:
    name = "process"

    def __init__(self, directory: Path, port: int | None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: dict[str, str], ready: str, timeout: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.directory,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            if _http_ok(self.url + ready):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready on {self.port} within {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        # The whole session: MLServer forks workers that must not outlive it.
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class LocalMLServer(_Process):
    """The shared MLServer; its model repository (and settings.json) is `directory`/repository."""

    name = "mlserver"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port)
        self.grpc_port = free_port()
        self.metrics_port = free_port()

    @property
    def repository(self) -> Path:
        return self.directory / "repository"

    def start(self, timeout: float = 90.0) -> LocalMLServer:
        self.repository.mkdir(parents=True, exist_ok=True)
        settings = {
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "parallel_workers": 0,  # in-process inference: no worker pool to fork on a 2-core machine
            "load_models_at_startup": True,
            "debug": False,
        }
        (self.repository / "settings.json").write_text(json.dumps(settings, indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self._spawn([str(mlserver_binary()), "start", str(self.repository)], env, "/v2/health/ready", timeout)
        return self


class LocalGateway(_Process):
    name = "gateway"

    def __init__(self, directory: Path, routes: Path, upstream: str | None, port: int | None = None) -> None:
        super().__init__(directory, port)
        self.routes, self.upstream = Path(routes), upstream

    def start(self, timeout: float = 30.0) -> LocalGateway:
        package_root = str(Path(__file__).resolve().parents[3])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        }
        argv = [
            sys.executable,
            "-m",
            "component_types.inference.driver.gateway",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--routes",
            str(self.routes),
        ]
        if self.upstream:
            argv += ["--upstream", self.upstream]
        self._spawn(argv, env, "/v2/health/live", timeout)
        return self


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.inference.driver.server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run MLServer and the gateway on 127.0.0.1 until interrupted")
    run.add_argument("--dir", required=True, type=Path)
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--gateway-port", type=int, default=8090)
    args = parser.parse_args(argv)
    server = LocalMLServer(args.dir, args.port).start()
    gateway = LocalGateway(args.dir, args.dir / "routes", server.url, args.gateway_port).start()
    print(
        f"CITYHUB_INFERENCE_SERVER_URL={server.url} CITYHUB_INFERENCE_GATEWAY_URL={gateway.url} "
        f"CITYHUB_INFERENCE_REPOSITORY_DIR={server.repository} CITYHUB_INFERENCE_ROUTES_DIR={gateway.routes}",
        flush=True,
    )
    try:
        while server.alive() and gateway.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
