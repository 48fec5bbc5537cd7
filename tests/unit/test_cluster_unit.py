"""The embedded cluster's building blocks, without any binary: ports, certificates, kubeconfigs, state."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cityhub import cli, embedded_cluster, paths, supervisor
from cityhub.embedded_cluster.commands import command, write_kwok_config
from cityhub.embedded_cluster.errors import ClusterError
from cityhub.embedded_cluster.kubeconfigs import write_kubeconfigs
from cityhub.embedded_cluster.layout import Layout, kubeconfig_path, layout
from cityhub.embedded_cluster.network import SERVICE_CIDR, SERVICE_IP
from cityhub.embedded_cluster.nodes import NODES, node_manifest
from cityhub.embedded_cluster.pki import CERTS, Pki, generate_pki
from cityhub.embedded_cluster.ports import PROCESSES, PortTakenError, pick_ports, port_env_var
from cityhub.embedded_cluster.state import ClusterState, load_state, save_state


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- paths


def test_paths_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CITYHUB_STATE", str(tmp_path / "st"))
    assert paths.bin_dir() == tmp_path / "cache" / "bin"
    assert paths.state_dir() == tmp_path / "st"
    assert kubeconfig_path() == tmp_path / "st" / "cluster" / "kubeconfig"
    monkeypatch.delenv("CITYHUB_STATE")
    assert paths.state_dir() == paths.repo_root() / ".state"
    assert (paths.repo_root() / "cityhub" / "paths.py").is_file()


def test_missing_tool_names_the_toolchain_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path))
    with pytest.raises(paths.ToolMissingError, match=r"kube-apiserver.*hack/toolchain\.sh"):
        paths.tool("kube-apiserver")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "etcd").chmod(0o755)
    assert paths.tool("etcd") == tmp_path / "bin" / "etcd"
    assert paths.missing_tools(["etcd", "kwok"]) == ["kwok"]


def test_up_without_toolchain_fails_naming_the_step(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path / "empty-cache"))
    assert embedded_cluster.main(["up"]) == 1
    err = capsys.readouterr().err
    assert 'step "find toolchain" failed' in err
    assert "hack/toolchain.sh" in err


# --- ports


def test_free_port_is_bindable_and_skips_excluded() -> None:
    port = supervisor.free_port()
    assert supervisor.port_is_free(port)
    assert supervisor.free_port(exclude={port}) != port


def test_free_ports_avoid_the_ephemeral_range() -> None:
    # A restarted cluster process gets its recorded port back only if no outgoing connection took it.
    low, high = supervisor.ephemeral_port_range()
    if low - supervisor.LOWEST_PORT < 1000:
        pytest.skip(f"ephemeral range {low}-{high} leaves no room below it")
    ports = [supervisor.free_port() for _ in range(50)]
    assert all(supervisor.LOWEST_PORT <= p < low for p in ports)


def test_pick_ports_gives_distinct_ports_to_every_role() -> None:
    ports = pick_ports(env={})
    assert set(ports) == set(PROCESSES)
    flat = [p for roles in ports.values() for p in roles.values()]
    assert len(flat) == len(set(flat)) == 6
    assert set(ports["etcd"]) == {"client", "peer"}


def test_port_env_var_names() -> None:
    assert port_env_var("kube-apiserver", "secure") == "CITYHUB_APISERVER_PORT"
    assert port_env_var("etcd", "client") == "CITYHUB_ETCD_PORT"
    assert port_env_var("etcd", "peer") == "CITYHUB_ETCD_PEER_PORT"
    assert port_env_var("kube-controller-manager", "secure") == "CITYHUB_CONTROLLER_MANAGER_PORT"
    assert port_env_var("kwok", "server") == "CITYHUB_KWOK_PORT"


def test_pinned_free_port_is_used() -> None:
    port = supervisor.free_port()
    ports = pick_ports(env={"CITYHUB_APISERVER_PORT": str(port)})
    assert ports["kube-apiserver"]["secure"] == port
    assert port not in [
        p for name, roles in ports.items() if name != "kube-apiserver" for p in roles.values()
    ]


def test_pinned_port_taken_names_the_port(listener: int) -> None:
    with pytest.raises(PortTakenError) as info:
        pick_ports(env={"CITYHUB_APISERVER_PORT": str(listener)})
    assert info.value.port == listener
    assert f"port {listener}" in str(info.value)
    assert "CITYHUB_APISERVER_PORT" in str(info.value)
    assert info.value.step == "pick ports"


def test_port_taken_error_reaches_the_user(
    state: Path,
    listener: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A fake toolchain: up must fail on the port before it starts (or even looks at) any binary.
    bin_dir = tmp_path / "cache" / "bin"
    bin_dir.mkdir(parents=True)
    for name in (*PROCESSES, "kubectl"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CITYHUB_APISERVER_PORT", str(listener))
    assert embedded_cluster.main(["up"]) == 1
    err = capsys.readouterr().err
    assert f"port {listener}" in err and 'step "pick ports"' in err
    assert not (state / "cluster" / "state.json").exists()


def test_pinned_port_not_a_number() -> None:
    with pytest.raises(ClusterError, match="CITYHUB_KWOK_PORT='abc' is not a port number"):
        pick_ports(env={"CITYHUB_KWOK_PORT": "abc"})


def test_port_accepts(listener: int) -> None:
    assert supervisor.port_accepts(listener)
    assert not supervisor.port_accepts(supervisor.free_port())


# --- certificates


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }


def test_apiserver_cert_sans(pki: Pki) -> None:
    dns, ips = sans(load_cert(pki.crt("apiserver")))
    assert dns >= {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert ips >= {"127.0.0.1", "10.96.0.1"}
    assert str(ipaddress.ip_network(SERVICE_CIDR)[1]) == SERVICE_IP


def test_certs_chain_to_the_ca(pki: Pki) -> None:
    ca = load_cert(pki.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in CERTS:
        cert = load_cert(pki.crt(name))
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_cert_identities(pki: Pki) -> None:
    def identity(name: str) -> tuple[str, list[str]]:
        subject = load_cert(pki.crt(name)).subject
        cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return str(cn), [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]

    assert identity("admin") == ("cityhub-admin", ["system:masters"])
    assert identity("controller-manager") == ("system:kube-controller-manager", [])
    assert identity("scheduler") == ("system:kube-scheduler", [])
    usage = load_cert(pki.crt("admin")).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = load_cert(pki.crt("apiserver")).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_private_keys_are_owner_only(pki: Pki) -> None:
    for key in [pki.sa_key, pki.key("ca"), pki.key("admin")]:
        assert key.stat().st_mode & 0o077 == 0, key
    assert b"PUBLIC KEY" in pki.sa_pub.read_bytes()


# --- kubeconfigs


def test_kubeconfig_rendering(pki: Pki, tmp_path: Path) -> None:
    lay = Layout(tmp_path / "cluster")
    write_kubeconfigs(lay, pki, "https://127.0.0.1:6443")
    admin = yaml.safe_load(lay.kubeconfig.read_text())
    assert admin["current-context"] == "cityhub"
    assert admin["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert (
        base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"]) == pki.ca.read_bytes()
    )
    user = admin["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == pki.crt("admin").read_bytes()
    assert base64.b64decode(user["client-key-data"]) == pki.key("admin").read_bytes()
    assert lay.kubeconfig.stat().st_mode & 0o077 == 0
    for name in ("controller-manager", "scheduler", "kwok"):
        conf = yaml.safe_load(lay.component_kubeconfig(name).read_text())
        cert = base64.b64decode(conf["users"][0]["user"]["client-certificate-data"])
        assert cert == pki.crt(name).read_bytes()


def test_kubeconfig_loads_in_the_kubernetes_client(pki: Pki, tmp_path: Path) -> None:
    from kubernetes import config as kconfig

    lay = Layout(tmp_path / "cluster")
    write_kubeconfigs(lay, pki, "https://127.0.0.1:6443")
    client = kconfig.new_client_from_config(config_file=str(lay.kubeconfig))
    assert client.configuration.host == "https://127.0.0.1:6443"


# --- state


def test_state_round_trip(state: Path) -> None:
    lay = layout()
    lay.root.mkdir(parents=True)
    rec = supervisor.Record(
        name="etcd", pid=1234, start_time=99, argv=["etcd", "--x"], log="/l", ports={"client": 1, "peer": 2}
    )
    original = ClusterState(apiserver="https://127.0.0.1:1", kubeconfig=str(lay.kubeconfig), processes=[rec])
    save_state(lay, original)
    loaded = load_state(lay)
    assert loaded == original
    assert loaded is not None and loaded.find("etcd") == rec and loaded.find("kwok") is None
    assert rec.port == 1


def test_unreadable_state_is_a_clear_error(state: Path) -> None:
    lay = layout()
    lay.root.mkdir(parents=True)
    lay.state_file.write_text("{not json")
    with pytest.raises(ClusterError, match=r"state\.json is unreadable"):
        load_state(lay)


def test_state_of_a_cluster_started_before_the_supervisor_is_read(state: Path) -> None:
    # Version 1 (the module's own records, `cmd`): a cluster left running across the upgrade stays usable.
    lay = layout()
    lay.root.mkdir(parents=True)
    rec = {
        "name": "etcd",
        "pid": 1234,
        "start_time": 99,
        "ports": {"client": 1},
        "cmd": ["etcd"],
        "log": "/l",
    }
    lay.state_file.write_text(
        json.dumps({"apiserver": "https://127.0.0.1:1", "kubeconfig": "/k", "processes": [rec], "version": 1})
    )
    loaded = load_state(lay)
    assert loaded is not None and loaded.find("etcd") == supervisor.Record(
        name="etcd", pid=1234, start_time=99, argv=["etcd"], log="/l", ports={"client": 1}
    )


def test_status_without_state(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "status"]) == 1
    out = capsys.readouterr().out
    for name in PROCESSES:
        assert name in out
    assert out.count("not started") == len(PROCESSES)


def test_down_without_state_is_fine(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert embedded_cluster.main(["down"]) == 0
    assert "nothing to stop" in capsys.readouterr().out


# --- processes, through cityhub.supervisor (with `sleep` standing in for a server)


def test_liveness_tells_exited_and_reused_pids_apart(tmp_path: Path) -> None:
    rec = supervisor.spawn("sleeper", ["sleep", "60"], log=tmp_path / "logs" / "sleeper.log", ports={"x": 1})
    assert supervisor.is_running(rec)
    assert os.getpgid(rec.pid) == rec.pid  # its own group, so down can signal it as one
    reused = dataclasses.replace(rec, start_time=rec.start_time + 1)
    assert not supervisor.is_running(reused)
    assert supervisor.stop(rec) == "stopped"
    assert not supervisor.is_running(rec)
    assert supervisor.stop(rec) == "already exited"


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    rec = supervisor.spawn("stubborn", cmd, log=tmp_path / "stubborn.log")
    supervisor.wait_until(lambda: False, 0.5)  # let it install the handler
    assert supervisor.stop(rec, timeout=1.0).startswith("killed")


def test_status_reports_a_crashed_process(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lay = layout()
    lay.root.mkdir(parents=True)
    running = supervisor.spawn("etcd", ["sleep", "60"], log=lay.log("etcd"), ports={"client": 1})
    # Not `true`: spawn itself rejects a process gone before its start time could be read.
    crashed = supervisor.spawn(
        "kube-apiserver", ["sleep", "0.5"], log=lay.log("kube-apiserver"), ports={"secure": 2}
    )
    assert supervisor.wait_until(lambda: not supervisor.is_running(crashed), 5)
    save_state(lay, ClusterState("https://127.0.0.1:2", str(lay.kubeconfig), [running, crashed]))
    try:
        assert embedded_cluster.main(["status"]) == 1
        rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[2:7]}
        assert rows == {
            "etcd": "running",
            "kube-apiserver": "exited",
            "kube-controller-manager": "started",
            "kube-scheduler": "started",
            "kwok": "started",
        }
    finally:
        assert embedded_cluster.main(["down"]) == 0
    assert not supervisor.is_running(running)
    assert not lay.state_file.exists()


# --- nodes


def test_node_manifests() -> None:
    nodes = {s.name: node_manifest(s) for s in NODES}
    assert sorted(nodes) == [f"cityhub-cpu-{i}" for i in range(3)] + [f"cityhub-gpu-{i}" for i in range(2)]
    for name, node in nodes.items():
        meta = node["metadata"]
        assert meta["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert meta["labels"]["type"] == "kwok"
        assert meta["labels"]["topology.kubernetes.io/zone"]
        assert node["status"]["capacity"] == node["status"]["allocatable"]
        gpu = name.startswith("cityhub-gpu")
        assert meta["labels"]["cityhub.io/pool"] == ("gpu-inference" if gpu else "cpu")
        assert (node["status"]["allocatable"].get("nvidia.com/gpu") == "4") is gpu
        assert (meta["labels"].get("nvidia.com/gpu.present") == "true") is gpu
        taints = node["spec"]["taints"]
        assert taints == (
            [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}] if gpu else []
        )


def test_kwok_config_has_node_and_pod_stages(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    docs = list(yaml.safe_load_all(write_kwok_config(lay).read_text()))
    kinds = {(d["kind"], d["spec"]["resourceRef"]["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Stage", "Node", "node-initialize") in kinds
    assert ("Stage", "Pod", "pod-ready") in kinds
    assert ("Stage", "Pod", "pod-delete") in kinds


def test_commands_use_loopback_and_the_pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in PROCESSES:
        (bin_dir / name).write_text("")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("CITYHUB_CACHE", str(tmp_path))
    lay = Layout(tmp_path / "cluster")
    pki = Pki(lay.pki)
    ports = pick_ports(env={})
    api = command("kube-apiserver", lay, pki, ports)
    assert f"--secure-port={ports['kube-apiserver']['secure']}" in api
    assert "--bind-address=127.0.0.1" in api
    assert f"--etcd-servers=https://127.0.0.1:{ports['etcd']['client']}" in api
    assert "--service-cluster-ip-range=10.96.0.0/12" in api
    kwok = command("kwok", lay, pki, ports)
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in kwok
    for name in PROCESSES:
        cmd = command(name, lay, pki, ports)
        assert cmd[0] == str(bin_dir / name)
        assert not any("0.0.0.0" in arg for arg in cmd)


def test_module_entry_point(state: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cityhub.embedded_cluster", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "up" in out and "status" in out


def test_a_real_node_is_not_started_on_a_disk_its_kubelet_would_evict_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Seen here: below the kubelet's eviction line the node tainted itself disk-pressure and every hub pod
    stayed Pending while `pulumi up` waited; now `cluster up --real-node` says so before starting anything.
    The line is absolute: a CI machine with 19.5 GiB free of 252 GiB (7.7%) must start one."""
    import shutil
    from collections import namedtuple

    from cityhub.embedded_cluster import real_node
    from cityhub.embedded_cluster.errors import ClusterError

    usage = namedtuple("usage", "total used free")
    gib = 2**30
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(252 * gib, 245 * gib, 7 * gib))
    refused = r"7.0 GiB free: .*evicts its pods below 2 GiB free and needs 6 GiB above that.*CITYHUB_STATE"
    with pytest.raises(ClusterError, match=refused):
        real_node.check_disk(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(252 * gib, 232 * gib, int(19.5 * gib)))
    real_node.check_disk(tmp_path)  # the CI machine that the 5% line refused
