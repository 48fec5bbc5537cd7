#!/usr/bin/env bash
# Builds the parts of the embedded cluster's real worker node (`cityhub cluster up --real-node`), pinned,
# cached under ~/.cache/cityhub (CITYHUB_CACHE overrides it) and idempotent like hack/toolchain.sh, which
# calls this script only when CITYHUB_REAL_NODE=1 (the default toolchain, README command 1 and CI stay as fast
# as before). Run it alone after hack/toolchain.sh:  bash hack/real-node.sh
#
#   <cache>/bin            kubelet and kube-proxy (k8s.io/kubernetes, hack/go/kubelet), coredns (hack/go/coredns:
#                          only the plugins the node's cluster DNS uses), containerd, containerd-shim-runc-v2,
#                          ctr (containerd v2), runc (cgo + static libseccomp from Debian's libseccomp-dev),
#                          crictl (cri-tools)
#   <cache>/cni/bin        bridge, host-local, loopback, portmap (containernetworking/plugins)
#   <cache>/real-node/images/<name>.oci.tar   OCI image archives built offline: the pod sandbox (pause, from
#                          kubernetes' build/pause/linux/pause.c, gcc -static) and busybox (Debian's
#                          busybox-static); imported into the node's containerd by `cluster up`
#   <cache>/real-node/images/{operator,nats,…}.oci.tar   the components' images (hack/images.sh)
#   <cache>/bin/docker-registry   Debian's docker-registry (CNCF distribution), unpacked: the registry the test
#                          of the README's push (skopeo copy … docker://<registry>/…) pushes to and the node
#                          pulls from (tests/integration/test_real_node.py)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"
export APT_CONFIG=${APT_CONFIG:-$ROOT/hack/apt.conf}  # wait for the dpkg lock (hack/apt.conf)
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
CNI_BIN=$CACHE/cni/bin
IMAGES=$CACHE/real-node/images
WORK=$CACHE/src/real-node
VENV=${CITYHUB_VENV:-$ROOT/.venv}
PYTHON=$VENV/bin/python; [ -x "$PYTHON" ] || PYTHON=python3
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN" "$CNI_BIN" "$IMAGES" "$WORK"

FAILED=()
log() { printf '[real-node] %s\n' "$*" >&2; }
fail() { log "FAILED: $1"; FAILED+=("$1"); }
stamp_ok() { [ -x "$1" ] && [ "$(cat "$(dirname "$1")/.$(basename "$1").version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$(dirname "$1")/.$(basename "$1").version"; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; log "  ($((SECONDS - t0))s)"; return $rc; }

# A Debian package's files, unpacked (not installed) under $WORK/deb/<package>: the version apt knows, which
# the stamp records. Prints the directory.
debian_package() {
  local pkg=$1 dir=$WORK/deb/$1 version
  version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    apt-get update -qq >&2 || true
    version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
  fi
  [ -n "$version" ] && [ "$version" != "(none)" ] || { log "apt knows no $pkg"; return 1; }
  if [ "$(cat "$dir/.version" 2>/dev/null)" != "$version" ]; then
    rm -rf "$dir" && mkdir -p "$dir/deb" || return 1
    (cd "$dir/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >&2) || return 1
    dpkg -x "$dir"/deb/*.deb "$dir/root" || return 1
    echo "$version" >"$dir/.version"
  fi
  echo "$dir/root"
}

# Host packages the node needs on PATH (not relocatable: they load shared libraries and kernel modules):
# iptables (nf_tables backend) for the CNI portmap plugin and kubelet's canary chains, later kube-proxy and the
# NetworkPolicy engine; ipset and conntrack for those too; skopeo, which pushes the image archives to a
# registry (README). Installed with apt-get only when missing.
host_packages() {
  local missing=() cmd pkg
  for cmd in iptables:iptables ipset:ipset conntrack:conntrack skopeo:skopeo; do
    command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
  done
  [ ${#missing[@]} = 0 ] && return 0
  log "host packages: apt-get install ${missing[*]}"
  { apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update -qq >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }; } \
    || { fail "host packages: apt-get install ${missing[*]}"; return 1; }
  for pkg in "${missing[@]}"; do log "  $pkg $(dpkg-query -W -f '${Version}' "$pkg")"; done
}

k8s_ldflags() {
  local v=v$KUBERNETES_VERSION major minor flags="" pkg
  major=${KUBERNETES_VERSION%%.*}; minor=${KUBERNETES_VERSION#*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$flags"
}

build_kubelet() {
  local v=v$KUBERNETES_VERSION cmd
  for cmd in kubelet kube-proxy; do
    stamp_ok "$BIN/$cmd" "$v" && continue
    log "$cmd $v: go build (hack/go/kubelet)"
    (cd "$ROOT/hack/go/kubelet" && timed go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/$cmd" \
      "k8s.io/kubernetes/cmd/$cmd") || { fail "$cmd $v: go build"; return 1; }
    stamp "$BIN/$cmd" "$v"
  done
}

# The node's cluster DNS: CoreDNS with only the plugins it uses (hack/go/coredns/main.go, pinned in its go.mod).
build_coredns() {
  local v
  v=$(cd "$ROOT/hack/go/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns) \
    || { fail "coredns: read version from hack/go/coredns/go.mod"; return 1; }
  stamp_ok "$BIN/coredns" "$v" && return 0
  log "coredns $v: go build (hack/go/coredns)"
  (cd "$ROOT/hack/go/coredns" && timed go build -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" -o "$BIN/coredns" .) \
    || { fail "coredns $v: go build"; return 1; }
  stamp "$BIN/coredns" "$v"
}

build_containerd() {
  local v=v$CONTAINERD_VERSION mod=github.com/containerd/containerd/v2 t missing=0
  for t in containerd containerd-shim-runc-v2 ctr; do stamp_ok "$BIN/$t" "$v" || missing=1; done
  [ $missing = 0 ] && return 0
  local ldflags="-s -w -X $mod/version.Version=$v -X $mod/version.Package=$mod"
  log "containerd $v: go install containerd, ctr, containerd-shim-runc-v2"
  # No cgo: the btrfs snapshotter (the only cgo part) drops out; overlayfs is the one used.
  GOBIN=$BIN timed go install -trimpath -tags urfave_cli_no_docs -ldflags "$ldflags" \
    "$mod/cmd/containerd@$v" "$mod/cmd/ctr@$v" || { fail "containerd $v: go install"; return 1; }
  # The shim without gRPC, as upstream builds it (smaller; it speaks ttrpc only).
  GOBIN=$BIN timed go install -trimpath -tags "urfave_cli_no_docs no_grpc" -ldflags "$ldflags" \
    "$mod/cmd/containerd-shim-runc-v2@$v" || { fail "containerd-shim-runc-v2 $v: go install"; return 1; }
  for t in containerd containerd-shim-runc-v2 ctr; do stamp "$BIN/$t" "$v"; done
}

build_runc() {
  local v=v$RUNC_VERSION seccomp
  stamp_ok "$BIN/runc" "$v" && return 0
  # runc needs cgo (its nsexec is C) and libseccomp for RuntimeDefault seccomp profiles (Pod Security
  # `restricted` asks for them). The headers and static library come from Debian's libseccomp-dev,
  # unpacked here rather than installed; libpathrs (a Rust library) is left out, runc falls back to Go.
  seccomp=$(debian_package libseccomp-dev) || { fail "runc $v: apt-get download libseccomp-dev"; return 1; }
  log "runc $v: go install (cgo, static, seccomp from Debian libseccomp-dev $(cat "$WORK/deb/libseccomp-dev/.version"))"
  CGO_ENABLED=1 PKG_CONFIG_PATH="$seccomp/usr/lib/x86_64-linux-gnu/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$seccomp" \
    GOBIN=$BIN timed go install -trimpath -tags "seccomp urfave_cli_no_docs netgo osusergo" \
    -ldflags "-s -w -X main.version=${v#v} -linkmode external -extldflags -static" \
    "github.com/opencontainers/runc@$v" || { fail "runc $v: go install"; return 1; }
  stamp "$BIN/runc" "$v"
}

build_crictl() {
  local v=v$CRI_TOOLS_VERSION
  stamp_ok "$BIN/crictl" "$v" && return 0
  log "crictl $v: go install"
  GOBIN=$BIN timed go install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$v" || { fail "crictl $v: go install"; return 1; }
  stamp "$BIN/crictl" "$v"
}

build_cni_plugins() {
  local v=v$CNI_PLUGINS_VERSION mod=github.com/containernetworking/plugins p missing=0
  local plugins=(main/bridge main/loopback ipam/host-local meta/portmap)
  for p in "${plugins[@]}"; do stamp_ok "$CNI_BIN/${p#*/}" "$v" || missing=1; done
  [ $missing = 0 ] && return 0
  log "CNI plugins $v: go install ${plugins[*]}"
  GOBIN=$CNI_BIN timed go install -trimpath \
    -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" \
    "${plugins[@]/#/$mod/plugins/}" || { fail "CNI plugins $v: go install"; return 1; }
  # go install takes one version for all packages of a module only as pkg@version each.
  for p in "${plugins[@]}"; do stamp "$CNI_BIN/${p#*/}" "$v"; done
}

build_images() {
  # The pause binary: kubernetes' own pause.c, from the pinned k8s.io/kubernetes module.
  local k8s pause_dir=$WORK/pause busybox want
  k8s=$(cd "$ROOT/hack/go/kubelet" && go list -m -f '{{.Dir}}' k8s.io/kubernetes) && [ -n "$k8s" ] \
    || { fail "pause image: locate k8s.io/kubernetes module"; return 1; }
  want="pause.c of k8s.io/kubernetes v$KUBERNETES_VERSION, $(gcc --version | head -1)"
  if [ ! -s "$IMAGES/pause.oci.tar" ] || [ "$(cat "$IMAGES/.pause.version" 2>/dev/null)" != "$want" ]; then
    log "pause image: gcc -static pause.c (k8s.io/kubernetes v$KUBERNETES_VERSION)"
    rm -rf "$pause_dir" && mkdir -p "$pause_dir/rootfs"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_IMAGE_TAG-cityhub" -o "$pause_dir/rootfs/pause" \
      "$k8s/build/pause/linux/pause.c" && strip "$pause_dir/rootfs/pause" \
      && "$PYTHON" "$ROOT/hack/oci_image.py" --rootfs "$pause_dir/rootfs" --name "$PAUSE_IMAGE" \
        --entrypoint /pause --user 65535:65535 --out "$IMAGES/pause.oci.tar" \
      || { fail "pause image: build"; return 1; }
    echo "$want" >"$IMAGES/.pause.version"
  fi
  busybox=$(debian_package busybox-static) || { fail "busybox image: apt-get download busybox-static"; return 1; }
  want="busybox-static $(cat "$WORK/deb/busybox-static/.version")"
  if [ ! -s "$IMAGES/busybox.oci.tar" ] || [ "$(cat "$IMAGES/.busybox.version" 2>/dev/null)" != "$want" ]; then
    log "busybox image: $want"
    "$PYTHON" "$ROOT/hack/oci_image.py" --rootfs "$busybox" --busybox --name "$BUSYBOX_IMAGE" \
      --cmd sh --user 65534:65534 --out "$IMAGES/busybox.oci.tar" \
      || { fail "busybox image: build"; return 1; }
    echo "$want" >"$IMAGES/.busybox.version"
  fi
}

# The registry of the push test: Debian's docker-registry unpacked (its package would start a service).
build_registry() {
  local root version
  root=$(debian_package docker-registry) || { fail "registry: apt-get download docker-registry"; return 1; }
  version="docker-registry $(cat "$WORK/deb/docker-registry/.version")"
  stamp_ok "$BIN/docker-registry" "$version" && return 0
  log "registry: $version"
  cp "$root/usr/bin/docker-registry" "$BIN/docker-registry" && stamp "$BIN/docker-registry" "$version" \
    || { fail "registry: copy docker-registry"; return 1; }
}

if [ "${1:-}" = "--versions" ]; then
  for t in kubelet kube-proxy coredns containerd containerd-shim-runc-v2 ctr runc crictl docker-registry; do
    printf '%-28s %s\n' "$t" "$(cat "$BIN/.$t.version" 2>/dev/null || echo 'not built')"
  done
  printf '%-28s %s\n' "cni plugins" "$(cat "$CNI_BIN/.bridge.version" 2>/dev/null || echo 'not built')"
  printf '%-28s %s\n' "$PAUSE_IMAGE" "$(cat "$IMAGES/.pause.version" 2>/dev/null || echo 'not built')"
  printf '%-28s %s\n' "$BUSYBOX_IMAGE" "$(cat "$IMAGES/.busybox.version" 2>/dev/null || echo 'not built')"
  bash "$ROOT/hack/images.sh" --versions
  exit 0
fi

t0=$SECONDS
host_packages
build_kubelet
build_coredns
build_containerd
build_runc
build_crictl
build_cni_plugins
build_images
build_registry
bash "$ROOT/hack/images.sh" || fail "component images (hack/images.sh)"
log "done in $((SECONDS - t0))s"
bash "$0" --versions
if [ ${#FAILED[@]} -gt 0 ]; then
  log "these steps failed:"
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
