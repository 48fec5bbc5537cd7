"""The maps backend in the embedded default: PostGIS and martin as local processes (martin's in
local_martin.py, what both share in local_common.py).

    start(ctx)       `cityhub operator start` calls it: PostGIS (initdb in ctx.directory, the catalog
                     bootstrapped) and martin, reused while they run (idempotent)
    LocalMaps        both together, with the operator's settings: the launcher, the tests and the benchmark
    PostgisServer    PostgreSQL 15 + PostGIS on 127.0.0.1 in a directory; runs SQL text through psql
    MartinServer     martin on 127.0.0.1, serving the catalog's tile function only

    <directory>/postgis/data, postgres.log    the database cluster and its log
    <directory>/martin/martin.yaml, martin.log     martin's config (mode 0600: the tiles role's password)
    <directory>/operator-dsn                       the operator's DSN (mode 0600): CITYHUB_MAPS_DSN_FILE

PostgreSQL refuses to run as root: when the caller is root, initdb and postgres run as the `postgres` user
that Debian's package creates (through setpriv, which execs, so the recorded PID is the server's), and the
PostGIS directory belongs to that user. Processes are started, awaited and stopped through cityhub.supervisor
only; the SQL (catalog_sql.py) goes through psql, so nothing here imports a database client.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from cityhub import supervisor
from cityhub.local_backends import LocalBackend, LocalContext
from cityhub.supervisor import ProcessFailed, Record, Supervisor
from cityhub_api.settings import Env
from component_types.maps.catalog_sql import bootstrap_script, quote_ident, quote_literal
from component_types.maps.credentials import Credentials
from component_types.maps.local_common import OS_USER, START_TIMEOUT, Binaries, previous_port, spawn
from component_types.maps.local_martin import MartinServer
from component_types.maps.naming import DATABASE, SUPERUSER, TILES_ROLE

SECRET_PURPOSE = "maps"
POSTGRES_PURPOSE = "maps-postgres"
"""ctx.secret purposes, as the stack's args.key(...): the master secret and the superuser's password."""

__all__ = ["Binaries", "LocalMaps", "MartinServer", "PostgisServer", "scratch_directory", "start"]


def _as_os_user() -> list[str]:
    """The argv prefix that runs a PostgreSQL server program as OS_USER when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", "--"]


def _unreachable_ancestor(directory: Path) -> Path | None:
    """As root: the first ancestor of `directory` that OS_USER cannot enter (no execute bit for others),
    e.g. pytest's private base directory."""
    for parent in reversed(directory.resolve().parents):
        if not parent.stat().st_mode & 0o001:
            return parent
    return None


def scratch_directory(prefix: str = "cityhub-maps-") -> Path:
    """A new directory under the system's temporary directory, for tests and benchmarks, that the postgres
    user may enter (mode 0711: search only) when PostgreSQL runs as that user; the caller removes it."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o711)
    return directory


class PostgisServer:
    """PostgreSQL 15 + PostGIS on 127.0.0.1 with scram-sha-256 password authentication; its cluster and log in
    `directory`, so `start()` after `stop()` or `kill()` finds the same data (on the same port when free).

    `start()` runs initdb the first time and creates the maps database. With `records`, the process is
    recorded there under `name` and a running one is reused (`reused` says so).
    """

    def __init__(
        self,
        directory: Path,
        password: str,
        *,
        port: int | None = None,
        name: str = "maps-postgres",
        records: Supervisor | None = None,
        binaries: Binaries | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.password = password
        self.port = port
        self.name = name
        self.records = records
        self.binaries = binaries or Binaries.from_env(Env())
        self.record: Record | None = None
        self.reused = False

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def dsn(self, user: str = SUPERUSER, password: str | None = None, database: str = DATABASE) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{quote(user, safe='')}:{secret}@{supervisor.HOST}:{self.port}/{database}"

    def start(self, timeout: float = START_TIMEOUT) -> PostgisServer:
        """Start it (or adopt the running one of `records`) and wait until it takes queries."""
        running = self.records.get(self.name) if self.records is not None else None
        if running is not None or self.is_running():
            self.record = running or self.record
            assert self.record is not None
            self.port, self.reused = self.record.ports["postgres"], True
            return self
        self.reused = False
        self.port = self.port or previous_port(self.records, self.name, "postgres") or supervisor.free_port()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        argv = [
            *_as_os_user(),
            str(self.binaries.pg_bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={supervisor.HOST}",
            "-c",
            "unix_socket_directories=",
            # A development and test server: durability across an OS crash is not worth the fsyncs.
            "-c",
            "fsync=off",
            "-c",
            "max_connections=100",
            "-c",
            "shared_buffers=128MB",
        ]
        self.record = spawn(
            self.records,
            self.name,
            argv,
            log=self.log,
            cwd=self.directory,
            ports={"postgres": self.port},
            serves="maps backend (PostGIS)",
            url=f"postgresql://{supervisor.HOST}:{self.port}/{DATABASE}",
        )
        supervisor.wait_ready(self.record, self._accepts_queries, timeout)
        try:
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _accepts_queries(self) -> bool:
        if not supervisor.port_accepts(self.port or 0):
            return False
        ready = subprocess.run(
            [str(self.binaries.pg_bin / "pg_isready"), "-q", "-h", supervisor.HOST, "-p", str(self.port)],
            capture_output=True,
            timeout=10,
        )
        return ready.returncode == 0

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        pwfile = self.directory / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            blocked = _unreachable_ancestor(self.directory)
            if blocked is not None:
                raise ProcessFailed(
                    f"{self.name}: the {OS_USER} user (PostgreSQL refuses root) cannot enter {blocked}: "
                    f"use a directory it can reach (scratch_directory() makes one) or chmod o+x {blocked}"
                )
            for path in (self.directory, pwfile):
                os.chown(path, *self._os_user_ids())
        self.directory.chmod(0o700)
        try:
            done = subprocess.run(
                [
                    *_as_os_user(),
                    str(self.binaries.pg_bin / "initdb"),
                    *("-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile)),
                    *("--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C.UTF-8"),
                ],
                capture_output=True,
                text=True,
                cwd=self.directory,
                timeout=300,
            )
        finally:
            pwfile.unlink()
        if done.returncode != 0:
            raise ProcessFailed(f"{self.name}: initdb failed:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")

    @staticmethod
    def _os_user_ids() -> tuple[int, int]:
        entry = pwd.getpwnam(OS_USER)
        return entry.pw_uid, entry.pw_gid

    def _create_database(self) -> None:
        exists = self.psql(
            f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(DATABASE)}", database="postgres"
        )
        if exists.strip() != "1":
            self.psql(f"CREATE DATABASE {quote_ident(DATABASE)}", database="postgres")

    def psql(self, script: str, *, database: str = DATABASE, timeout: float = 120.0) -> str:
        """Run SQL text as the superuser; returns psql's unaligned output. ProcessFailed with psql's terse
        error (the primary message only: no statement text, which may hold a password)."""
        argv = [
            str(self.binaries.pg_bin / "psql"),
            *("-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse"),
            *("-h", supervisor.HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", "-"),
        ]
        # The password goes through the environment, never the argv (which `ps` shows).
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        done = subprocess.run(argv, input=script, capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0:
            raise ProcessFailed(f"{self.name}: psql failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def bootstrap(self, tiles_password: str) -> None:
        """The catalog, tile function and roles (catalog_sql.py), as the driver creates them."""
        self.psql(bootstrap_script(tiles_password))

    def stop(self) -> str:
        """SIGINT, PostgreSQL's fast shutdown (sessions end, a checkpoint is written); returns the outcome."""
        if self.record is None:
            return "not started"
        return supervisor.stop(self.record, sig=signal.SIGINT)

    def kill(self) -> str:
        """SIGKILL, like a crash (the next start recovers from the WAL)."""
        if self.record is None:
            return "not started"
        return supervisor.kill(self.record)

    def is_running(self) -> bool:
        return self.record is not None and supervisor.is_running(self.record)


class LocalMaps:
    """PostGIS (with the catalog bootstrapped) and martin, and the operator's settings for them.

    `secret_file` holds the maps master secret (every derived credential, the tiles role's password
    included); `postgres_password` is the superuser's. Process names come from `process_name` (the
    launcher's are ctx.process_name: maps-postgres, maps-martin).
    """

    def __init__(
        self,
        directory: Path,
        secret_file: Path,
        postgres_password: str,
        *,
        records: Supervisor | None = None,
        process_name: Callable[[str], str] = lambda what: f"maps-{what}",
        binaries: Binaries | None = None,
        postgis_directory: Path | None = None,
    ) -> None:
        """`postgis_directory`: where PostgreSQL keeps its cluster (default `directory`/postgis)."""
        self.directory = Path(directory)
        self.secret_file = Path(secret_file)
        self.binaries = binaries or Binaries.from_env(Env())
        self.postgis = PostgisServer(
            postgis_directory or self.directory / "postgis",
            postgres_password,
            name=process_name("postgres"),
            records=records,
            binaries=self.binaries,
        )
        self.martin = MartinServer(
            self.directory / "martin",
            "",
            name=process_name("martin"),
            records=records,
            binaries=self.binaries,
        )

    @property
    def secret(self) -> bytes:
        return self.secret_file.read_text(encoding="utf-8").strip().encode()

    @property
    def dsn_file(self) -> Path:
        return self.directory / "operator-dsn"

    def start(self) -> LocalMaps:
        """Start (or reuse) both; ProcessFailed naming the process and its log when one cannot start."""
        self.binaries.require()
        tiles_password = Credentials(self.secret).tiles_password()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.postgis.start()
        try:
            if not self.postgis.reused:
                # martin checks its function source at start: the catalog must exist before it.
                self.postgis.bootstrap(tiles_password)
            self.dsn_file.touch(mode=0o600)
            self.dsn_file.write_text(self.postgis.dsn() + "\n")
            self.martin.database_url = self.postgis.dsn(TILES_ROLE, tiles_password)
            self.martin.start(restart=not self.postgis.reused)
        except BaseException:
            if not self.postgis.reused:
                self.postgis.stop()
            raise
        return self

    def operator_env(self) -> dict[str, str]:
        """The driver's CITYHUB_MAPS_* settings: files for the secrets, the tile server's URL."""
        return {
            "CITYHUB_MAPS_DSN_FILE": str(self.dsn_file),
            "CITYHUB_MAPS_SECRET_FILE": str(self.secret_file),
            "CITYHUB_MAPS_TILE_URL": self.martin.url,
        }

    def stop(self) -> None:
        self.martin.stop()
        self.postgis.stop()


def postgis_home(directory: Path) -> Path:
    """Where the embedded default's PostgreSQL keeps its cluster: `directory`/postgis, unless (as root) the
    postgres user cannot enter `directory` — a state directory in a private folder (a fresh clone under a
    mode-0700 temporary directory, pytest's). Then a stable folder of its own under the system's temporary
    directory, named after `directory`, so a restart finds the same data."""
    wanted = directory / "postgis"
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or _unreachable_ancestor(wanted) is None:
        return wanted
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / f"cityhub-maps-{digest}"
    home.mkdir(mode=0o711, exist_ok=True)
    home.chmod(0o711)
    return home / "postgis"


def start(ctx: LocalContext) -> LocalBackend:
    """PostGIS + martin for the operator's maps driver; reused while they run."""
    local = LocalMaps(
        ctx.directory,
        ctx.secret(SECRET_PURPOSE),
        ctx.secret(POSTGRES_PURPOSE).read_text(encoding="utf-8").strip(),
        records=ctx.supervisor,
        process_name=ctx.process_name,
        binaries=Binaries.from_env(ctx.env, ctx.cache),
        postgis_directory=postgis_home(ctx.directory),
    ).start()
    assert local.postgis.record is not None and local.martin.record is not None
    return LocalBackend(
        operator_env=local.operator_env(),
        processes=(local.postgis.record, local.martin.record),
        summary=f"PostGIS at {supervisor.HOST}:{local.postgis.port}, martin tiles at {local.martin.url}",
    )
