"""The embedded default's inference backend: the shared MLServer and the gateway, as local processes.

    <state>/backends/inference/repository/   MLServer's model repository: settings.json (its ports) and one
                                             model-settings.json per endpoint, written by the driver
    <state>/backends/inference/routes/       the gateway's route files, written by the driver
    <state>/backends/inference/*.log         inference-mlserver.log, inference-gateway.log (and *.ports.json)
    <cache>/inference/models/                the city's model store (install.sh trains and puts it there)
    <cache>/venvs/mlserver/bin/mlserver      MLServer in its own venv (install.sh)

Both listen on 127.0.0.1 on ports from supervisor.free_port (MLServer's HTTP, gRPC and metrics ports too),
kept in <name>.ports.json so a restart gets the same ones back while they are free: the route files name the
server's URL. MLServer loads every model-settings.json of its repository at start, so a restarted server
serves the endpoints it served before. `MLServer` and `Gateway` are what the tests and the benchmark start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from cityhub import supervisor
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.paths import ToolMissingError
from cityhub.supervisor import HOST, Record, Supervisor
from cityhub_api.settings import Env
from component_types.inference import naming
from component_types.inference.gateway_limits import GatewayLimits

SERVES = "inference backend"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the component types' package: the gateway runs as `python -m` from there."""


def mlserver_binary(cache: Path, env: Env | None = None) -> Path:
    """CITYHUB_INFERENCE_MLSERVER_BIN, else <cache>/venvs/mlserver/bin/mlserver (built by install.sh)."""
    default = cache / "venvs" / "mlserver" / "bin" / "mlserver"
    path = (env or Env()).path("CITYHUB_INFERENCE_MLSERVER_BIN", default)
    if not path.is_file():
        raise ToolMissingError(
            f"MLServer is not installed (expected {path}): run component_types/inference/install.sh "
            "(hack/toolchain.sh runs it)"
        )
    return path


def model_store(cache: Path) -> Path:
    return cache / "inference" / "models"


def sticky_ports(directory: Path, what: str, names: tuple[str, ...]) -> dict[str, int]:
    """The ports `what` had last time if they are all still free, else new free ones (remembered)."""
    file = directory / f"{what}.ports.json"
    try:
        old = {str(k): int(v) for k, v in json.loads(file.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        old = {}
    if set(old) == set(names) and all(supervisor.port_released(p) for p in old.values()):
        return old
    ports: dict[str, int] = {}
    for name in names:
        ports[name] = supervisor.free_port(exclude=ports.values())
    directory.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


class LocalProcess:
    """One local process of the backend: started, waited for and stopped through cityhub.supervisor.

    With `records` (the embedded default's Supervisor) it is recorded under `name`, so `cityhub operator
    status|stop` find it; without (tests, benchmarks) it is only this Python process's child.
    """

    ready_path = "/"

    def __init__(
        self, directory: Path, name: str, ports: Mapping[str, int], records: Supervisor | None = None
    ) -> None:
        self.directory = Path(directory)
        self.name = name
        self.ports = dict(ports)
        self.process = supervisor.Managed(name, records)

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: Mapping[str, str], timeout: float) -> None:
        self.process.launch(
            argv,
            ready=lambda: supervisor.http_ok(self.url + self.ready_path),
            timeout=timeout,
            log=self.log,
            env=env,
            cwd=self.directory,
            ports=self.ports,
            serves=SERVES,
            url=self.url,
        )

    @property
    def record(self) -> Record | None:
        return self.process.record

    def alive(self) -> bool:
        return self.process.is_running()

    def stop(self) -> str:
        return self.process.stop()

    def kill(self) -> str:
        """SIGKILL, like a crash."""
        return self.process.kill()


class MLServer(LocalProcess):
    """The shared MLServer; its model repository (with its settings.json) is `directory`/repository."""

    ready_path = "/v2/health/ready"
    PORTS = ("http", "grpc", "metrics")

    def __init__(
        self,
        directory: Path,
        binary: Path,
        *,
        name: str = "mlserver",
        ports: Mapping[str, int] | None = None,
        records: Supervisor | None = None,
    ) -> None:
        chosen = ports or {p: supervisor.free_port() for p in self.PORTS}
        super().__init__(directory, name, chosen, records)
        self.binary = binary

    @property
    def repository(self) -> Path:
        return self.directory / "repository"

    def start(self, timeout: float = 90.0) -> MLServer:
        self.repository.mkdir(parents=True, exist_ok=True)
        settings = {
            "host": HOST,
            "http_port": self.ports["http"],
            "grpc_port": self.ports["grpc"],
            "metrics_port": self.ports["metrics"],
            "parallel_workers": 0,  # in-process inference: no worker pool to fork on a 2-core machine
            "load_models_at_startup": True,
            "debug": False,
        }
        (self.repository / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        # Its own venv: the CLI's interpreter settings must not leak into it.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self._spawn([str(self.binary), "start", str(self.repository)], env, timeout)
        return self


class Gateway(LocalProcess):
    """The inference gateway (gateway.py) on the route files in `routes`."""

    ready_path = "/v2/health/live"

    def __init__(
        self,
        directory: Path,
        routes: Path,
        upstream: str | None = None,
        *,
        name: str = "gateway",
        port: int | None = None,
        records: Supervisor | None = None,
        limits: GatewayLimits | None = None,
    ) -> None:
        super().__init__(directory, name, {"http": port or supervisor.free_port()}, records)
        self.routes, self.upstream = Path(routes), upstream
        self.limits = limits or GatewayLimits()

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", naming.GATEWAY_MODULE, "--listen", f"{HOST}:{self.port}"]
        argv += ["--routes", str(self.routes)]
        return argv + (["--upstream", self.upstream] if self.upstream else []) + self.limits.argv()

    def start(self, timeout: float = 30.0) -> Gateway:
        self.routes.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        self._spawn(self.argv(), {**os.environ, "PYTHONPATH": path}, timeout)
        return self


def operator_env(server: MLServer, gateway: Gateway, models: Path, secret_file: Path) -> dict[str, str]:
    """The driver's settings for a local MLServer and gateway (file paths, never the secret itself)."""
    return {
        "CITYHUB_INFERENCE_MODE": "embedded",
        "CITYHUB_INFERENCE_SERVER_URL": server.url,
        "CITYHUB_INFERENCE_GATEWAY_URL": gateway.url,
        "CITYHUB_INFERENCE_REPOSITORY_DIR": str(server.repository),
        "CITYHUB_INFERENCE_ROUTES_DIR": str(gateway.routes),
        "CITYHUB_INFERENCE_MODELS_DIR": str(models),
        "CITYHUB_INFERENCE_SECRET_FILE": str(secret_file),
    }


def start(ctx: LocalContext) -> LocalBackend:
    """The shared MLServer and the gateway, started unless they already run (idempotent)."""
    binary = mlserver_binary(ctx.cache, ctx.env)
    name = ctx.process_name("mlserver")
    running = ctx.supervisor.get(name)
    ports = running.ports if running else sticky_ports(ctx.directory, name, MLServer.PORTS)
    server = MLServer(ctx.directory, binary, name=name, ports=ports, records=ctx.supervisor)
    if running:
        server.process.record = running
    else:
        server.start()

    name = ctx.process_name("gateway")
    running = ctx.supervisor.get(name)
    port = running.port if running else sticky_ports(ctx.directory, name, ("http",))["http"]
    routes = ctx.directory / "routes"
    gateway = Gateway(ctx.directory, routes, server.url, name=name, port=port, records=ctx.supervisor)
    if running and running.argv == gateway.argv():
        gateway.process.record = running
    else:
        if running:  # it runs with another server as its upstream: restarted on this one
            ctx.supervisor.stop(name)
        gateway.start()
    assert server.record is not None and gateway.record is not None
    return LocalBackend(
        operator_env=operator_env(server, gateway, model_store(ctx.cache), ctx.secret("inference")),
        processes=(server.record, gateway.record),
        summary=f"MLServer at {server.url}, inference gateway at {gateway.url}",
    )
