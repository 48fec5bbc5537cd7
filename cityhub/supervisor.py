"""The one way cityhub starts, waits for and stops a process: the embedded cluster, the local operator, every
local backend, the tests and the benchmarks all use it.

    sup = Supervisor(state_dir / "processes")         # records live here, one JSON file per process
    rec = sup.spawn("nats-server", [binary, "-c", conf], log=logs / "nats.log", ports={"client": port})
    sup.wait_ready(rec, lambda: port_accepts(port), timeout=20)     # raises ProcessFailed with the log tail
    sup.stop(rec)                                       # SIGTERM to its group, SIGKILL after a timeout

A record keeps the PID *and* the kernel's start time of that PID (/proc/<pid>/stat), so a PID that the
kernel has since given to another program is never signalled: `is_running`, `stop` and `kill` check both.
Processes run in their own session (they outlive the CLI that started them, and their whole group is
signalled). Ports are picked below the kernel's ephemeral range, so a restarted server gets its port back.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
LOWEST_PORT = 10000
STOP_TIMEOUT = 15.0


class ProcessFailed(RuntimeError):
    """A process exited or did not become ready; the message names it and shows its log's last lines."""


@dataclass
class Record:
    name: str
    pid: int
    start_time: int
    """/proc/<pid>/stat starttime: tells our process apart from a later one that reuses the PID."""
    argv: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    serves: str = ""
    """What it is for, shown by `status` (e.g. "messaging backend", "operator: messaging, maps")."""
    url: str = ""

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(**data)


# Popen objects of the processes this Python process started: kept so they are reaped (no zombies when a
# test starts and stops servers in one process) and not garbage-collected with a ResourceWarning.
_children: dict[int, subprocess.Popen[bytes]] = {}


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid`, or None when it does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: fields after it are split safely.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(rec: Record) -> bool:
    """Whether the process of `rec` is alive and is still the one that was started (not a reused PID)."""
    _reap(rec.pid)
    return proc_start_time(rec.pid) == rec.start_time


def tail(path: Path | str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"  (no log at {path})"
    return f"  --- last {len(text)} lines of {path} ---\n" + "\n".join(f"  | {line}" for line in text)


def spawn(
    name: str,
    argv: list[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ports: Mapping[str, int] | None = None,
    serves: str = "",
    url: str = "",
) -> Record:
    """Start `argv` in its own session with stdout and stderr appended to `log`; returns its record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd or log.parent,
        )
    _children[child.pid] = child
    start = proc_start_time(child.pid)
    if start is None:
        raise ProcessFailed(f"{name} exited at once\n{tail(log)}")
    return Record(name, child.pid, start, list(argv), str(log), dict(ports or {}), serves, url)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_ready(rec: Record, ready: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Wait until `ready()`; returns the seconds it took. ProcessFailed if the process dies or times out
    (the process is then stopped, so nothing half-started is left behind)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if not is_running(rec):
            raise ProcessFailed(f"{rec.name} exited before it was ready; see {rec.log}\n{tail(rec.log)}")
        if ready():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            stop(rec)
            raise ProcessFailed(
                f"{rec.name} was not ready within {timeout:.0f}s; see {rec.log}\n{tail(rec.log)}"
            )
        time.sleep(interval)


def stop(rec: Record, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> str:
    """Signal the process group (SIGTERM), SIGKILL it after `timeout`; returns what happened, for the user."""
    if not is_running(rec):
        return "already exited"
    # Only a group whose leader is verified to be ours (start time matches) is signalled: PIDs get reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, sig)
    if sig == signal.SIGKILL or wait_until(lambda: not is_running(rec), timeout):
        wait_until(lambda: not is_running(rec), 5.0)
        return "stopped" if sig != signal.SIGKILL else "killed"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(rec.pid, signal.SIGKILL)
    if wait_until(lambda: not is_running(rec), 5.0):
        return f"killed (no exit {timeout:.0f}s after SIGTERM)"
    raise ProcessFailed(f"{rec.name}: pid {rec.pid} survives SIGKILL")


def kill(rec: Record) -> str:
    """SIGKILL, like a crash (tests of recovery)."""
    return stop(rec, sig=signal.SIGKILL)


# -- ports ---------------------------------------------------------------------------------------------


def ephemeral_port_range() -> tuple[int, int]:
    """The range the kernel takes source ports of outgoing connections from."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR like the Go servers use, so a socket lingering in TIME_WAIT does not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_promised: set[int] = set()
"""Ports this process handed out: two servers started in a row (or side by side) never get the same one."""
_picking = threading.Lock()


def free_port(exclude: Iterable[int] = (), host: str = HOST) -> int:
    """A free TCP port on `host`, not in `exclude` and not handed out before by this process.

    Picked below the ephemeral range rather than by binding to port 0 (which returns an ephemeral port): once
    a server on an ephemeral port stops, the kernel may give that port to any outgoing connection as its
    source port, and the server cannot be restarted on its recorded port.
    """
    with _picking:
        return _free_port(set(exclude), host)


def _free_port(exclude: set[int], host: str) -> int:
    taken = exclude | _promised
    low, _ = ephemeral_port_range()
    if low - LOWEST_PORT >= 1000:
        for _ in range(200):
            port = random.randrange(LOWEST_PORT, low)
            if port not in taken and port_is_free(port, host):
                _promised.add(port)
                return port
    for _ in range(100):  # a machine whose ephemeral range leaves no room below it: the kernel chooses
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            _promised.add(port)
            return port
    raise ProcessFailed(f"could not find a free port on {host}")


def port_released(port: int, timeout: float = 3.0, host: str = HOST) -> bool:
    """Whether a port a stopped or killed server held is free again (waiting a moment for the kernel to
    release its socket), so a restarted server can get its old port back."""
    return wait_until(lambda: port_is_free(port, host), timeout, 0.05)


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0, ca_file: Path | None = None) -> bool:
    """Whether GET `url` answers 200 (readiness endpoints); HTTPS verified against `ca_file` when given."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# -- a directory of records (for processes that outlive the command that started them) -------------------


class Supervisor:
    """Processes recorded in a directory (one `<name>.json` each), so a later command finds, reports and
    stops what an earlier one started."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _file(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def spawn(self, name: str, argv: list[str], **kwargs: object) -> Record:
        """Start a process (see `spawn`) and record it; a running process of that name is an error."""
        current = self.get(name)
        if current is not None:
            raise ProcessFailed(f"{name} is already running (pid {current.pid})")
        rec = spawn(name, argv, **kwargs)  # type: ignore[arg-type]
        self.save(rec)
        return rec

    def save(self, rec: Record) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._file(rec.name).with_suffix(".tmp")
        tmp.write_text(rec.to_json())
        os.replace(tmp, self._file(rec.name))  # write-then-rename: never a half-written record

    def record(self, name: str) -> Record | None:
        """The record of `name`, alive or not."""
        try:
            return Record.from_json(self._file(name).read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise ProcessFailed(f"{self._file(name)} is unreadable ({e}); remove it") from e

    def get(self, name: str) -> Record | None:
        """The record of `name` if that process is still running."""
        rec = self.record(name)
        return rec if rec is not None and is_running(rec) else None

    def records(self) -> list[Record]:
        """Every record, alive or not, oldest first."""
        recs = [self.record(p.stem) for p in sorted(self.directory.glob("*.json"))]
        return sorted((r for r in recs if r is not None), key=lambda r: r.start_time)

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> str | None:
        """Stop `name` and forget it; None when there was no record."""
        rec = self.record(name)
        if rec is None:
            return None
        outcome = stop(rec, timeout)
        self._file(name).unlink(missing_ok=True)
        return outcome

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> list[tuple[str, int, str]]:
        """Stop every recorded process, newest first; returns (name, pid, outcome)."""
        done = []
        for rec in reversed(self.records()):
            outcome = self.stop(rec.name, timeout) or "no record"
            done.append((rec.name, rec.pid, outcome))
        return done


class Managed:
    """One process a launcher owns, by name: recorded in `records` when given (so `cityhub operator
    status|stop` find it), else private to its caller (a test's server). The classes of the types' local
    launchers hold one per process instead of repeating start, readiness, stop and kill."""

    def __init__(self, name: str, records: Supervisor | None = None) -> None:
        self.name, self.records = name, records
        self.record: Record | None = None

    def launch(self, argv: list[str], *, ready: Callable[[], bool], timeout: float, **how: object) -> Record:
        """Start `argv` (see `spawn` for `how`) and wait until `ready()`; ProcessFailed with the log tail."""
        if self.records is not None:
            self.record = self.records.spawn(self.name, argv, **how)
        else:
            self.record = spawn(self.name, argv, **how)  # type: ignore[arg-type]
        wait_ready(self.record, ready, timeout)
        return self.record

    def is_running(self) -> bool:
        return self.record is not None and is_running(self.record)

    def stop(self) -> str:
        """SIGTERM (SIGKILL after a timeout), and forget its record; returns what happened."""
        if self.record is None:
            return "not started"
        if self.records is not None:
            return self.records.stop(self.name) or "no record"
        return stop(self.record)

    def kill(self) -> str:
        """SIGKILL, like a crash (the record stays: a restart finds its ports)."""
        return kill(self.record) if self.record is not None else "not started"
