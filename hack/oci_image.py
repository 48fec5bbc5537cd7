"""Packs a directory into a one-layer OCI image archive (an OCI image layout in a tar, what
`ctr images import` and `skopeo copy oci-archive:` read), offline and reproducibly: entries sorted, owned
by root, time 0, gzip without a timestamp, so the same inputs give the same digests.

    python hack/oci_image.py --rootfs DIR --name cityhub.local/pause:3.10.2 --entrypoint /pause \
        --user 65535:65535 --out pause.oci.tar
    python hack/oci_image.py --rootfs <busybox-static unpacked> --busybox ...   only bin/busybox, its applets
                                                                                as symlinks, /etc/passwd, /tmp
    python hack/oci_image.py --rootfs base/ --rootfs app/ --env PYTHONPATH=/app ...   one layer per --rootfs,
                                                                                in order (the base first)

Used by hack/real-node.sh and hack/images.sh; stdlib only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _entry(name: str, *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    tar.addfile(_entry(name, mode=mode, size=len(data)), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    tar.addfile(_entry(name, kind=tarfile.DIRTYPE, mode=mode))


def _add_tree(tar: tarfile.TarFile, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            info = _entry(name, kind=tarfile.SYMTYPE, mode=0o777)
            info.linkname = str(path.readlink())
            tar.addfile(info)
        elif path.is_dir():
            _add_dir(tar, name, path.stat().st_mode & 0o7777)
        else:
            data = path.read_bytes()
            _add_file(tar, name, data, path.stat().st_mode & 0o7777)


def _add_busybox(tar: tarfile.TarFile, root: Path) -> None:
    busybox = root / "bin" / "busybox"
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True)
    for directory in ("bin", "etc", "sbin", "usr", "usr/bin", "usr/sbin"):
        _add_dir(tar, directory)
    _add_dir(tar, "tmp", 0o1777)
    _add_file(tar, "bin/busybox", busybox.read_bytes(), 0o755)
    _add_file(tar, "etc/passwd", PASSWD.encode())
    _add_file(tar, "etc/group", GROUP.encode())
    for applet in sorted(set(applets.stdout.split())):
        if applet == "bin/busybox":
            continue
        info = _entry(applet, kind=tarfile.SYMTYPE, mode=0o777)
        info.linkname = "/bin/busybox"
        tar.addfile(info)


def layer(rootfs: Path, busybox: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        (_add_busybox if busybox else _add_tree)(tar, rootfs)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_archive(
    raw_layers: list[bytes],
    name: str,
    entrypoint: list[str],
    cmd: list[str],
    user: str,
    env: list[str] | None = None,
    workdir: str = "/",
) -> bytes:
    blobs: dict[str, bytes] = {}
    layer_descs = [
        _blob(
            blobs, gzip.compress(raw, compresslevel=6, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        )
        for raw in raw_layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": entrypoint or None,
            "Cmd": cmd or None,
            "User": user,
            "Env": [PATH_ENV, *(env or [])],
            "WorkingDir": workdir,
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in raw_layers],
        },
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cityhub hack/oci_image.py"}],
    }
    config_desc = _blob(blobs, _json(config), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layer_descs,
    }
    manifest_desc = _blob(blobs, _json(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {
        # ctr import names the image after io.containerd.image.name; other tools read ref.name.
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_file(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add_file(tar, "index.json", _json(index))
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest, data in sorted(blobs.items()):
            _add_file(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", data)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rootfs",
        type=Path,
        action="append",
        required=True,
        help="a layer's directory; repeat for more layers",
    )
    parser.add_argument("--name", required=True, help="image reference, e.g. cityhub.local/pause:3.10.2")
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--user", default="65534:65534")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE, besides PATH")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--busybox", action="store_true", help="rootfs is Debian's busybox-static unpacked")
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args()
    layers = [layer(rootfs, ns.busybox) for rootfs in ns.rootfs]
    archive = image_archive(layers, ns.name, ns.entrypoint, ns.cmd, ns.user, ns.env, ns.workdir)
    tmp = ns.out.with_suffix(".tmp")
    tmp.write_bytes(archive)
    tmp.replace(ns.out)
    print(f"{ns.name}: {ns.out} ({len(archive)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
