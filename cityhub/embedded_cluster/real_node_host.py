"""The host state a real node changes, and how `down` puts it back: its bridge, its cgroups (one root per
cgroup v1 hierarchy), the mounts under its directories (overlay root filesystems, shm, network namespaces,
the kubelet's volume tmpfs), the iptables chains the kubelet and CNI plugins add, and the kernel settings
the kubelet and the bridge plugin change (recorded before, restored after).

Each cleanup returns what it could not undo, for the user, instead of raising: `down` does as much as it can.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from cityhub.embedded_cluster.errors import ClusterError

CGROUP_V1 = Path("/sys/fs/cgroup")
# What the kubelet's cgroupfs driver uses on cgroup v1 (it fails without cpu, cpuacct, cpuset, memory, pids);
# runc also mirrors each cgroup into the cgroup2 hierarchy mounted at "unified" (hybrid mode).
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio", "systemd")
CONTROLLERS += ("unified",)
SYSCTLS = (
    # Set by the kubelet unless protectKernelDefaults (which would make it refuse to start instead).
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    # Set by the CNI bridge plugin for a gateway bridge.
    "net.ipv4.ip_forward",
    # Set by `up`: bridged pod-to-pod packets pass iptables, so a Service whose endpoint is on the same
    # bridge as its client is translated both ways (kube-proxy needs it, and only warns without it).
    "net.bridge.bridge-nf-call-iptables",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
CHAIN_PREFIXES = ("KUBE-", "CNI-", "CITYHUB-NP")


def run(argv: list[str], step: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise ClusterError(step, f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    return result


# -- bridge ------------------------------------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def create_bridge(name: str, address: str, prefix: int) -> None:
    """The pods' bridge with the node's address, made before the kubelet starts (it serves there)."""
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"], "create bridge")
    run(["ip", "addr", "replace", f"{address}/{prefix}", "dev", name], "create bridge")
    run(["ip", "link", "set", name, "up"], "create bridge")


def delete_bridge(name: str) -> list[str]:
    if not link_exists(name):
        return []
    result = run(["ip", "link", "del", name], "delete bridge", check=False)
    return [] if result.returncode == 0 else [f"ip link del {name}: {result.stderr.strip()}"]


def veths_on(bridge: str) -> list[str]:
    """The pods' host-side interfaces still attached to the bridge."""
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


# -- cgroups -----------------------------------------------------------------------------------------------


def available_controllers() -> list[str]:
    return [c for c in CONTROLLERS if (CGROUP_V1 / c / "cgroup.procs").exists()]


def check_cgroups() -> None:
    needed = ("cpu", "cpuacct", "cpuset", "memory", "pids")
    missing = [c for c in needed if c not in available_controllers()]
    if missing:
        raise ClusterError(
            "check host", f"cgroup v1 hierarchies missing under {CGROUP_V1}: {', '.join(missing)}"
        )


def create_cgroups(name: str) -> None:
    for controller in available_controllers():
        path = CGROUP_V1 / controller / name
        path.mkdir(exist_ok=True)
        if controller == "cpuset":
            # A new cpuset has no CPUs or memory nodes: nothing could run in it until they are copied.
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (path / key).read_text().strip():
                    (path / key).write_text((CGROUP_V1 / controller / key).read_text())


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for controller in available_controllers():
        root = CGROUP_V1 / controller / name
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_pids(pids: set[int]) -> None:
    """SIGKILL processes found by their cgroup or command line (containers and shims whose runtime is gone):
    no supervisor record exists for them, their membership identifies them as the node's."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def remove_cgroups(name: str) -> list[str]:
    problems = []
    for controller in available_controllers():
        root = CGROUP_V1 / controller / name
        if not root.is_dir():
            continue
        # Children before parents: a cgroup directory is removed with rmdir once it has no children.
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(FileNotFoundError):
                _rmdir(directory, problems)
        _rmdir(root, problems)
    return problems


def _rmdir(path: Path, problems: list[str]) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        problems.append(f"cgroup {path}: {e.strerror}")


# -- processes by command line -------------------------------------------------------------------------------


def pids_with_arg(needle: str) -> set[int]:
    """Processes whose command line contains `needle` (the node's containerd socket: its shims)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.add(int(proc.name))
    found.discard(os.getpid())
    return found


# -- mounts --------------------------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(*roots: Path) -> list[Path]:
    """Mount points below any of `roots`, deepest last (as mounted)."""
    prefixes = [str(r) for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(Path(point))
    return found


def unmount_all(*roots: Path) -> list[str]:
    """Unmount everything below `roots`, deepest first; a busy mount is detached (MNT_DETACH)."""
    for _ in range(3):  # a mount below a detached one can appear once its parent is gone
        points = mounts_under(*roots)
        if not points:
            return []
        for point in sorted(points, key=lambda p: -len(p.parts)):
            if run(["umount", str(point)], "unmount", check=False).returncode != 0:
                run(["umount", "-l", str(point)], "unmount", check=False)
    return [f"still mounted: {p}" for p in mounts_under(*roots)]


def remove_tree(path: Path) -> list[str]:
    """Delete a directory of the node, never through a mount (a bind-mounted host path would be emptied)."""
    if not path.exists():
        return []
    if mounts_under(path):
        return [f"not removing {path}: something is still mounted below it"]
    shutil.rmtree(path, ignore_errors=True)
    return [f"could not remove {path}"] if path.exists() else []


def remove_empty_dirs(*paths: Path) -> None:
    """rmdir each directory if it is empty: shared parents (/run/cityhub, containerd's hard-coded shim socket
    directory /run/containerd/s) go once no cluster uses them, and are left alone while one does."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.rmdir()


# -- kernel settings ---------------------------------------------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys", *name.split("."))


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def set_sysctl(name: str, value: str) -> None:
    try:
        _sysctl_path(name).write_text(value)
    except OSError as e:
        raise ClusterError("set kernel settings", f"sysctl {name}={value}: {e.strerror}") from e


def restore_sysctls(before: dict[str, str]) -> list[str]:
    problems = []
    for name, value in before.items():
        try:
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value)
        except OSError as e:
            problems.append(f"sysctl {name}={value}: {e.strerror}")
    return problems


# -- iptables ----------------------------------------------------------------------------------------------


def iptables_chains() -> dict[str, list[str]]:
    """The chains of each (command, table), for telling afterwards which ones the node added."""
    chains: dict[str, list[str]] = {}
    for cmd in IPTABLES:
        if shutil.which(cmd) is None:
            continue
        for table in TABLES:
            result = run([cmd, "-w", "-t", table, "-S"], "read iptables", check=False)
            if result.returncode == 0:
                chains[f"{cmd} {table}"] = [
                    line.split()[1] for line in result.stdout.splitlines() if line.startswith("-N ")
                ]
    return chains


def remove_added_chains(before: dict[str, list[str]]) -> list[str]:
    """Delete the KUBE-*/CNI-*/CITYHUB-NP* chains that did not exist before the node started, and the
    rules jumping to them from other chains; nothing else is touched."""
    problems = []
    for key, chains in iptables_chains().items():
        cmd, table = key.split()
        added = [c for c in chains if c.startswith(CHAIN_PREFIXES) and c not in before.get(key, [])]
        if not added:
            continue
        rules = run([cmd, "-w", "-t", table, "-S"], "read iptables", check=False).stdout.splitlines()
        for rule in rules:
            # Quoted: kube-proxy's rules carry comments with spaces (-m comment --comment "kubernetes …").
            words = shlex.split(rule)
            if words[:1] == ["-A"] and any(w in added for w in words[2:]) and words[1] not in added:
                run([cmd, "-w", "-t", table, "-D", *words[1:]], "remove iptables rule", check=False)
        for chain in added:
            run([cmd, "-w", "-t", table, "-F", chain], "flush chain", check=False)
        for chain in added:
            result = run([cmd, "-w", "-t", table, "-X", chain], "delete chain", check=False)
            if result.returncode != 0:
                problems.append(f"{cmd} -t {table} -X {chain}: {result.stderr.strip()}")
    return problems
