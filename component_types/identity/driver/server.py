"""A local Keycloak on 127.0.0.1 for development, tests and benchmarks (component_types/identity/install.sh
installs it).

    python -m component_types.identity.driver.server run --dir D [--port 8080]
    python -m component_types.identity.driver.server template     make the cached initial database

It runs the pre-built distribution (`kc.sh start --optimized`) with its H2 database under `directory`, a
free HTTP port and a free management port (health), loopback only, local caches (no clustering), a modest
heap, and a bootstrap admin client whose secret the operator uses (CITYHUB_IDENTITY_ADMIN_*).

A first start creates the database (about 60 s on two cores); a start on an existing one takes about 20 s.
So `LocalKeycloak.from_template(dir)` copies a cached, freshly initialised database (master realm and
admin client only, made once by `template`, which component_types/identity/install.sh runs) into `dir`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

KEYCLOAK_VERSION = "26.0.8"
ADMIN_CLIENT_ID = "cityhub-operator"
HEAP = "-Xms64m -Xmx512m"


def keycloak_home() -> Path:
    """CITYHUB_KEYCLOAK_HOME, else <cache>/keycloak/<version> as component_types/identity/install.sh installs it."""
    given = os.environ.get("CITYHUB_KEYCLOAK_HOME")
    if given:
        return Path(given)
    cache = os.environ.get("CITYHUB_CACHE")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "cityhub"
    home = base / "keycloak" / KEYCLOAK_VERSION
    if not (home / "bin" / "kc.sh").exists():
        raise FileNotFoundError(
            f"Keycloak {KEYCLOAK_VERSION} is not installed in {home}: run component_types/identity/install.sh"
        )
    return home


def template_dir() -> Path:
    return keycloak_home().parent / f"template-{KEYCLOAK_VERSION}"


def ensure_template() -> Path:
    """The cached initial database (with its admin secret); made on first use by one start and stop."""
    target = template_dir()
    if (target / "admin-secret").exists():
        return target
    work = Path(f"{target}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    server = LocalKeycloak(work)
    try:
        server.start()
    finally:
        server.stop()
    (work / "keycloak.log").unlink(missing_ok=True)
    try:
        work.rename(target)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)  # another process made it first
    return target


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalKeycloak:
    """Started with `start()`, stopped by its PID (the process group of kc.sh and its JVM) with `stop()`."""

    def __init__(self, directory: Path, *, port: int | None = None, admin_secret: str | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.management_port = free_port()
        secret_file = self.directory / "admin-secret"
        if admin_secret is None and secret_file.exists():
            admin_secret = secret_file.read_text().strip()
        self.admin_secret = admin_secret or secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_template(cls, directory: Path, *, port: int | None = None) -> LocalKeycloak:
        """A server whose database starts as a copy of the cached template (see ensure_template)."""
        template = ensure_template()
        directory = Path(directory)
        if not (directory / "db").exists():
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copytree(template / "db", directory / "db")
            shutil.copy2(template / "admin-secret", directory / "admin-secret")
        return cls(directory, port=port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_secret_file(self) -> Path:
        return self.directory / "admin-secret"

    def operator_env(self, realm: str = "city") -> dict[str, str]:
        """The CITYHUB_IDENTITY_* variables that point an operator at this server."""
        return {
            "CITYHUB_IDENTITY_URL": self.url,
            "CITYHUB_IDENTITY_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
            "CITYHUB_IDENTITY_ADMIN_SECRET_FILE": str(self.admin_secret_file),
            "CITYHUB_IDENTITY_REALM": realm,
        }

    def start(self, timeout: float = 240.0) -> LocalKeycloak:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.admin_secret_file.write_text(self.admin_secret + "\n")
        self.admin_secret_file.chmod(0o600)
        home = keycloak_home()
        env = {
            **os.environ,
            # Used only when the master realm is created, i.e. on the first start in this directory.
            "KC_BOOTSTRAP_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
            "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET": self.admin_secret,
            "JAVA_OPTS_APPEND": HEAP,
        }
        args = [
            str(home / "bin" / "kc.sh"),
            "start",
            "--optimized",
            "--http-enabled=true",
            "--http-host=127.0.0.1",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            "--hostname-strict=false",
            "--cache=local",
            f"--db-url=jdbc:h2:file:{self.directory / 'db' / 'keycloakdb'};NON_KEYWORDS=VALUE",
        ]
        log = (self.directory / "keycloak.log").open("ab")
        self.process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.management_port}/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Keycloak exited with {self.process.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Keycloak was not ready within {timeout:.0f}s; see {log.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # kc.sh execs java in the same process group (start_new_session): signal the group by its id.
        with _suppress_missing():
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with _suppress_missing():
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is ProcessLookupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.identity.driver.server")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a local Keycloak on 127.0.0.1 until interrupted (development)")
    run.add_argument("--dir", required=True, type=Path)
    run.add_argument("--port", type=int, default=8080)
    sub.add_parser("template", help="make the cached initial database that from_template copies")
    args = parser.parse_args(argv)
    if args.command == "template":
        print(ensure_template())
        return 0
    server = LocalKeycloak.from_template(args.dir, port=args.port).start()
    print(f"Keycloak pid {server.process.pid if server.process else '?'} at {server.url}", flush=True)
    for key, value in server.operator_env().items():
        print(f"export {key}={value}", flush=True)
    try:
        while server.process and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
