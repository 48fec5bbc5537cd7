#!/usr/bin/env bash
# Builds cityhub's pinned toolchain from the Go module proxy and PyPI, and installs it under
# ~/.cache/cityhub (override with CITYHUB_CACHE). Idempotent: a tool whose binary already carries
# the pinned version is not rebuilt. A tool that fails to build is named with its version and the
# failing step; the tools built before it stay usable, and the script exits non-zero at the end.
#
#   hack/toolchain.sh            build what is missing, print every tool's version
#   hack/toolchain.sh --versions only print the versions
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"
export APT_CONFIG=${APT_CONFIG:-$ROOT/hack/apt.conf}  # wait for the dpkg lock (hack/apt.conf)
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
VENV=${CITYHUB_VENV:-$ROOT/.venv}
export PULUMI_HOME=${PULUMI_HOME:-$CACHE/pulumi-home}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# The checksum database does not know some Pulumi module versions (404); their hashes are pinned
# by the go.sum files committed under hack/go/ instead.
export GONOSUMDB=github.com/pulumi
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
mkdir -p "$BIN" "$PULUMI_HOME"

FAILED=()
log() { printf '[toolchain] %s\n' "$*" >&2; }
fail() { log "FAILED: $1"; FAILED+=("$1"); }
stamp_ok() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$BIN/.$1.version"; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; log "  ($((SECONDS - t0))s)"; return $rc; }

python_env() {
  # The project with its dev extras, and each component type's own Python requirements
  # (component_types/<type>/requirements.txt: a type brings its client library without touching pyproject).
  local want reqs=() r
  for r in "$ROOT"/component_types/*/requirements.txt; do [ -e "$r" ] && reqs+=(-r "$r"); done
  want=$(cat "$ROOT/pyproject.toml" "$ROOT"/component_types/*/requirements.txt 2>/dev/null | sha256sum | cut -c1-16)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.cityhub-deps" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "python: creating $VENV and installing pinned dependencies"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return 1
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[dev]" "${reqs[@]}" || return 1
  echo "$want" >"$VENV/.cityhub-deps"
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

build_kubernetes() {
  local v=v$KUBERNETES_VERSION tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl) t missing=0
  for t in "${tools[@]}"; do stamp_ok "$t" "$v" || missing=1; done
  [ $missing = 0 ] && return 0
  log "kubernetes $v: go build ${tools[*]}"
  (cd "$ROOT/hack/go/kubernetes" && timed go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/" \
    "${tools[@]/#/k8s.io/kubernetes/cmd/}") || { fail "kubernetes $v: go build"; return 1; }
  for t in "${tools[@]}"; do stamp "$t" "$v"; done
}

build_etcd() {
  local v=v$ETCD_VERSION
  stamp_ok etcd "$v" && return 0
  log "etcd $v: go build"
  (cd "$ROOT/hack/go/etcd" && timed go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3) \
    || { fail "etcd $v: go build"; return 1; }
  stamp etcd "$v"
}

build_kwok() {
  local v=v$KWOK_VERSION
  stamp_ok kwok "$v" && return 0
  log "kwok $v: go build"
  (cd "$ROOT/hack/go/kwok" && timed go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok) \
    || { fail "kwok $v: go build"; return 1; }
  stamp kwok "$v"
}

build_pulumi() {
  local v=v$PULUMI_VERSION sdk
  if ! stamp_ok pulumi "$v"; then
    log "pulumi $v: go build"
    (cd "$ROOT/hack/go/pulumi" && timed go build -trimpath -tags osusergo,grpcnotrace \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$v" \
      -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) || { fail "pulumi $v: go build"; return 1; }
    stamp pulumi "$v"
  fi
  # The Python language host: see hack/langhost/README.md for why it is ours and not Pulumi's.
  # `go list -m -f {{.Dir}}` prints nothing for a module not yet in the module cache: download it first.
  sdk=$(cd "$ROOT/hack/go/pulumi" && go mod download github.com/pulumi/pulumi/sdk/v3 \
    && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3) && [ -n "$sdk" ] \
    || { fail "pulumi-language-python $v: locate sdk/v3 module"; return 1; }
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
  cat >"$BIN/pulumi-language-python" <<EOF
#!/bin/sh
# Installed by hack/toolchain.sh: cityhub's Python language host for the Pulumi engine.
# \`cityhub pulumi\` sets CITYHUB_ROOT and CITYHUB_PYTHON, so several checkouts sharing this cache each run
# their own host; the defaults are the checkout that installed it.
exec "\${CITYHUB_PYTHON:-$VENV/bin/python}" "\${CITYHUB_ROOT:-$ROOT}/hack/langhost/pulumi_language_python.py" "\$@"
EOF
  chmod 0755 "$BIN/pulumi-language-python"
}

build_pulumi_kubernetes() {
  local v src mod
  v=$("$VENV/bin/python" -c 'import importlib.resources as r, json; print(json.loads(r.files("pulumi_kubernetes").joinpath("pulumi-plugin.json").read_text())["version"])') \
    || { fail "pulumi-resource-kubernetes: read the version the pulumi-kubernetes Python SDK asks for"; return 1; }
  v=${v#v}
  if ! stamp_ok pulumi-resource-kubernetes "v$v"; then
    log "pulumi-resource-kubernetes v$v (module $PULUMI_KUBERNETES_PROVIDER_MODULE): generate + go build"
    src=$CACHE/src/pulumi-kubernetes
    rm -rf "$src" && mkdir -p "$src"
    cp "$ROOT"/hack/go/pulumi-kubernetes/go.{mod,sum} "$src/"
    (
      set -e
      cd "$src"
      # `go list -m -f {{.Dir}}` prints nothing for a module not yet in the module cache (fresh machine).
      go mod download github.com/pulumi/pulumi-kubernetes/provider/v4
      mod=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
      [ -n "$mod" ] || { echo "provider/v4 module directory not found" >&2; exit 1; }
      for f in main.go generate.go schema.json terraform-mapping.json; do
        install -m 0644 "$mod/cmd/pulumi-resource-kubernetes/$f" "$src/$f"
      done
      VERSION=$v go run generate.go
      timed go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$v" \
        -o "$BIN/pulumi-resource-kubernetes" .
    ) || { fail "pulumi-resource-kubernetes v$v: generate/go build"; return 1; }
    stamp pulumi-resource-kubernetes "v$v"
  fi
  if [ ! -x "$PULUMI_HOME/plugins/resource-kubernetes-v$v/pulumi-resource-kubernetes" ]; then
    "$BIN/pulumi" plugin install resource kubernetes "v$v" --file "$BIN/pulumi-resource-kubernetes" \
      || { fail "pulumi-resource-kubernetes v$v: pulumi plugin install --file"; return 1; }
  fi
}

print_versions() {
  printf '%-28s %s\n' TOOL VERSION
  printf '%-28s %s\n' go "$(go version | cut -d' ' -f3)"
  printf '%-28s %s\n' python "$("$VENV/bin/python" --version 2>&1 | cut -d' ' -f2)"
  printf '%-28s %s\n' etcd "$("$BIN/etcd" --version 2>/dev/null | head -1 | awk '{print $3}')"
  local t
  for t in kube-apiserver kube-controller-manager kube-scheduler; do
    printf '%-28s %s\n' "$t" "$("$BIN/$t" --version 2>/dev/null | awk '{print $2}')"
  done
  printf '%-28s %s\n' kubectl "$("$BIN/kubectl" version --client 2>/dev/null | awk '/Client/{print $3}')"
  printf '%-28s %s\n' kwok "$("$BIN/kwok" --version 2>/dev/null | awk '{print $3}' | tr -d ,)"
  printf '%-28s %s\n' nats-server "$("$BIN/nats-server" --version 2>/dev/null | awk '{print $2}')"
  printf '%-28s %s\n' pulumi "$("$BIN/pulumi" version 2>/dev/null)"
  printf '%-28s %s\n' pulumi-language-python "cityhub hack/langhost + exec script of sdk/v3 v$PULUMI_VERSION (pulumi SDK $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pulumi"))' 2>/dev/null))"
  printf '%-28s %s\n' pulumi-resource-kubernetes "$(cat "$BIN/.pulumi-resource-kubernetes.version" 2>/dev/null)"
  printf '%-28s %s\n' pulumi-kubernetes "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pulumi-kubernetes"))' 2>/dev/null) (sdk)"
}

if [ "${1:-}" = "--versions" ]; then print_versions; exit 0; fi

t0=$SECONDS
python_env || fail "python environment: pip install -e .[dev]"
build_etcd
build_kwok
build_kubernetes
NATS_SERVER_VERSION=$NATS_SERVER_VERSION bash "$ROOT/hack/nats.sh" || fail "nats-server v$NATS_SERVER_VERSION: go install"
build_pulumi
[ -x "$VENV/bin/python" ] && build_pulumi_kubernetes
# Prometheus and promtool (the monitoring tests' real server), then each component type's backend: every
# component_types/<type>/install.sh, pinned, cached, idempotent. Each gets CITYHUB_CACHE, CITYHUB_BIN and
# CITYHUB_VENV and names what it installs on stderr.
for script in "$ROOT"/hack/prometheus.sh "$ROOT"/component_types/*/install.sh; do
  [ -e "$script" ] || continue
  name=$(basename "$(dirname "$script")"); [ "$name" = hack ] && name=prometheus
  log "backend $name"
  CITYHUB_CACHE=$CACHE CITYHUB_BIN=$BIN CITYHUB_VENV=$VENV timed bash "$script" || fail "backend $name: $script"
done
# The embedded cluster's real worker node (`cityhub cluster up --real-node`): only when asked for, so the
# default toolchain (README command 1, CI) is not slowed by containerd, runc, the kubelet and its images.
REAL_NODE=${CITYHUB_REAL_NODE:-}
case "${REAL_NODE,,}" in 1|true|yes|on) REAL_NODE=1 ;; *) REAL_NODE=0 ;; esac
if [ $REAL_NODE = 1 ]; then
  log "real node (CITYHUB_REAL_NODE=$CITYHUB_REAL_NODE)"
  CITYHUB_CACHE=$CACHE CITYHUB_VENV=$VENV timed bash "$ROOT/hack/real-node.sh" || fail "real node: hack/real-node.sh"
fi
log "done in $((SECONDS - t0))s; binaries in $BIN"
print_versions
if [ ${#FAILED[@]} -gt 0 ]; then
  log "these steps failed (everything else is built and usable):"
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
