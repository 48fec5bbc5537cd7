"""Local PostGIS and martin processes for development, tests and benchmarks; martin's configuration.

    python -m component_types.maps.driver.server new-secret > secret           a new master secret
    python -m component_types.maps.driver.server bootstrap-sql --secret-file secret    the catalog script
    python -m component_types.maps.driver.server martin-config --secret-file secret \
        --database-url-env DATABASE_URL [--listen 0.0.0.0:3000]                  martin's config.yaml
    python -m component_types.maps.driver.server run --secret-file secret --dir D      PostGIS + martin

Both servers listen on 127.0.0.1 with free ports and are stopped by their PID. PostgreSQL refuses to run as
root, so when the caller is root the data directory belongs to, and the server runs as, the `postgres` user
that Debian's postgresql package creates.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psycopg

from component_types.maps.driver import catalog_sql
from component_types.maps.driver.credentials import Credentials
from component_types.maps.driver.naming import CATALOG_SCHEMA, TILE_FUNCTION, TILE_SOURCE, TILES_ROLE

DATABASE = "cityhub_maps"
SUPERUSER = "postgres"
PG_BIN = Path(os.environ.get("CITYHUB_PG_BIN", "/usr/lib/postgresql/15/bin"))


def cache_dir() -> Path:
    cache = os.environ.get("CITYHUB_CACHE")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "cityhub"


def martin_binary() -> Path:
    """CITYHUB_MARTIN_BIN, else <cache>/bin/martin (component_types/maps/install.sh builds it), else the PATH's."""
    given = os.environ.get("CITYHUB_MARTIN_BIN")
    if given:
        return Path(given)
    built = cache_dir() / "bin" / "martin"
    if built.exists():
        return built
    found = shutil.which("martin")
    if found is None:
        raise FileNotFoundError(f"martin is not built (expected {built}): run component_types/maps/install.sh")
    return Path(found)


def require_backends() -> None:
    """Raise FileNotFoundError naming what is missing and how to install it (PostgreSQL+PostGIS, martin)."""
    if not (PG_BIN / "postgres").exists():
        raise FileNotFoundError(
            f"PostgreSQL 15 is not installed ({PG_BIN}/postgres): run component_types/maps/install.sh"
        )
    if not Path("/usr/share/postgresql/15/extension/postgis.control").exists():
        raise FileNotFoundError("PostGIS is not installed for PostgreSQL 15: run component_types/maps/install.sh")
    martin_binary()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def martin_config(database_url: str, *, listen: str, pool_size: int = 20) -> str:
    """martin's config: only the catalog's tile function is published, and nothing is cached.

    Caching is off because martin's cache is shared by every caller: authorization is decided per request
    by the tile function and must not be bypassed by a tile cached for another department.
    """
    return "\n".join(
        [
            "# Rendered by component_types.maps.driver.server: martin serves the cityhub tile function.",
            f"listen_addresses: '{listen}'",
            "cache_size_mb: 0",
            "postgres:",
            f"  connection_string: '{database_url}'",
            f"  pool_size: {pool_size}",
            "  auto_publish: false",
            "  functions:",
            f"    {TILE_SOURCE}:",
            f"      schema: {CATALOG_SCHEMA}",
            f"      function: {TILE_FUNCTION}",
            "      minzoom: 0",
            "      maxzoom: 24",
            "",
        ]
    )


def _wait_port(process: subprocess.Popen[bytes], port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s; see {log}")


def _stop(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


class LocalPostgis:
    """A PostgreSQL 15 + PostGIS server on 127.0.0.1 with a free port and scram-sha-256 password auth.

    `start()` runs initdb in a fresh directory the first time, creates the `cityhub_maps` database and
    returns; `stop()` sends SIGINT (fast shutdown) to the server's PID.
    """

    def __init__(self, directory: Path | None = None, *, port: int | None = None, password: str = "") -> None:
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="cityhub-postgis-"))
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self._user = SUPERUSER if os.geteuid() == 0 else None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def dsn(self, user: str = SUPERUSER, password: str | None = None, database: str = DATABASE) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{quote(user, safe='')}:{secret}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self._user, cwd=self.directory)

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.directory.chmod(0o700)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user:
            os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
        try:
            self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"initdb failed: {e.stderr.decode(errors='replace')[-2000:]}") from e
        finally:
            pwfile.unlink()

    def start(self, timeout: float = 30.0) -> LocalPostgis:
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        log = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=128MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self._user,
            cwd=self.directory,
        )
        try:
            _wait_port(self.process, self.port, timeout, "postgres", self.log)
            self._create_database(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create_database(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(database="postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        _stop(self.process, signal.SIGINT, timeout)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class LocalMartin:
    """martin on 127.0.0.1 with a free port, connected as the tiles role; stopped by its PID."""

    def __init__(self, directory: Path, database_url: str, *, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.database_url = database_url
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalMartin:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "martin.yaml"
        config.touch(mode=0o600)
        config.write_text(martin_config(self.database_url, listen=f"127.0.0.1:{self.port}"))
        log_path = self.directory / "martin.log"
        log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(martin_binary()), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "martin=warn")},
        )
        try:
            _wait_port(self.process, self.port, timeout, "martin", log_path)
            deadline = time.monotonic() + timeout
            while True:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{self.url}/health", timeout=2) as r,
                ):
                    if r.status == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"martin is not healthy after {timeout}s; see {log_path}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        _stop(self.process, signal.SIGTERM, timeout)


def bootstrap(dsn: str, secret: bytes) -> None:
    """Create the catalog, tile function and roles (idempotent); needs a superuser connection."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in catalog_sql.bootstrap_statements(Credentials(secret).tiles_password()):
            conn.execute(statement)


class LocalMaps:
    """PostGIS + catalog + martin, all local: what the tests, the benchmark and `run` use."""

    def __init__(self, directory: Path, secret: bytes) -> None:
        self.directory = Path(directory)
        self.secret = secret
        self.postgis = LocalPostgis()
        self.martin: LocalMartin | None = None

    def start(self) -> LocalMaps:
        self.postgis.start()
        try:
            bootstrap(self.postgis.dsn(), self.secret)
            tiles_url = self.postgis.dsn(TILES_ROLE, Credentials(self.secret).tiles_password())
            self.martin = LocalMartin(self.directory / "martin", tiles_url).start()
        except BaseException:
            self.postgis.remove()
            raise
        return self

    def env(self) -> dict[str, str]:
        """The driver's CITYHUB_MAPS_* settings for this local stack."""
        assert self.martin is not None
        return {
            "CITYHUB_MAPS_DSN": self.postgis.dsn(),
            "CITYHUB_MAPS_SECRET": self.secret.decode(),
            "CITYHUB_MAPS_TILE_URL": self.martin.url,
        }

    def stop(self) -> None:
        if self.martin is not None:
            self.martin.stop()
        self.postgis.remove()


def _read_secret(path: Path) -> bytes:
    secret = path.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 32:
        raise SystemExit(f"{path}: needs at least 32 characters of random text (new-secret)")
    return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m component_types.maps.driver.server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-secret", help="print a new random master secret")
    boot = sub.add_parser("bootstrap-sql", help="print the catalog bootstrap script (run it as a superuser)")
    boot.add_argument("--secret-file", required=True, type=Path)
    cfg = sub.add_parser("martin-config", help="print martin's config.yaml")
    cfg.add_argument("--database-url", default="${DATABASE_URL}", help="default: martin reads $DATABASE_URL")
    cfg.add_argument("--listen", default="0.0.0.0:3000")
    cfg.add_argument("--pool-size", type=int, default=20)
    tiles = sub.add_parser("tiles-password", help="print the password of the tiles role")
    tiles.add_argument("--secret-file", required=True, type=Path)
    run = sub.add_parser("run", help="run PostGIS and martin locally until interrupted (development)")
    run.add_argument("--secret-file", required=True, type=Path)
    run.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "new-secret":
        print(secrets.token_urlsafe(48))
    elif args.command == "bootstrap-sql":
        sys.stdout.write(
            catalog_sql.bootstrap_script(Credentials(_read_secret(args.secret_file)).tiles_password())
        )
    elif args.command == "martin-config":
        sys.stdout.write(martin_config(args.database_url, listen=args.listen, pool_size=args.pool_size))
    elif args.command == "tiles-password":
        print(Credentials(_read_secret(args.secret_file)).tiles_password())
    else:
        local = LocalMaps(args.dir, _read_secret(args.secret_file)).start()
        for key, value in local.env().items():
            print(f"{key}={value}", flush=True)
        try:
            while local.postgis.process and local.postgis.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
