#!/usr/bin/env bash
# Builds the components' container images offline, as OCI archives (hack/oci_image.py), for the embedded
# cluster's real node (`cityhub cluster up --real-node` imports them into its containerd) or a city's
# registry. Called by hack/real-node.sh; run alone with:  bash hack/images.sh   (--versions: what is built)
#
#   <cache>/real-node/images/nats.oci.tar      $NATS_IMAGE: the pinned static nats-server (hack/nats.sh) on an
#                                              empty root (passwd, /tmp); user 65532
#   <cache>/real-node/images/operator.oci.tar  $OPERATOR_IMAGE: three layers, each rebuilt only when its
#       inputs change (recorded in <cache>/src/images/<layer>/.inputs):
#       base  python3.11 from Debian (the packages below, unpacked with dpkg -x: no maintainer scripts, no
#             apt/dpkg/shell in the image), stdlib byte-compiled (hash-based .pyc, so reproducible)
#       deps  the operator's requirements from PyPI: pyproject's dependencies without pulumi* (the stack's,
#             not the operator's) plus component_types/*/requirements.txt, pinned to the versions of the
#             project's .venv (pip freeze as constraints), in /usr/lib/python3/dist-packages
#       app   the project's wheel (pip wheel of a copy of the sources) in /usr/local/lib/python3.11/dist-packages
#             and schemas/ in /usr/local/share/cityhub/schemas (CITYHUB_SCHEMAS_DIR); user 65532
#   <cache>/real-node/images/keycloak.oci.tar  $KEYCLOAK_IMAGE: Java 17 from Debian, busybox, the Keycloak
#                                              distribution install.sh pre-built (component_types/identity/
#                                              image.sh); user 1000
#   <cache>/real-node/images/models.oci.tar    $MODELS_IMAGE_REPOSITORY:<store digest>: the city's model store
#                                              under /models on busybox (the same image.sh); user 1000
#   <cache>/real-node/images/postgis.oci.tar   $POSTGIS_IMAGE: PostgreSQL 15 + PostGIS from Debian, user 999
#   <cache>/real-node/images/martin.oci.tar    $MARTIN_IMAGE: the martin install.sh built; user 65532
#                                              (both: component_types/maps/image.sh)
#   <cache>/real-node/images/mlserver.oci.tar  $MLSERVER_IMAGE: MLServer + its scikit-learn runtime from PyPI
#                                              on the operator's base layer (component_types/inference/
#                                              image.sh); user 1000
#   Push to a city's registry, e.g. with skopeo:
#     skopeo copy oci-archive:<cache>/real-node/images/operator.oci.tar docker://registry.example.gov.cn/cityhub/operator:0.1.0
#   and set cityhub:operator.image (cityhub:backends.messaging.image and .sensing.image for nats,
#   cityhub:backends.identity.image for keycloak, .maps.postgisImage and .maps.martinImage, .inference.mlserverImage
#   and .inference.modelsImage) to those references.
#
# Needs root for nothing but the smoke test (chroot into the assembled root to import the operator).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"
export APT_CONFIG=${APT_CONFIG:-$ROOT/hack/apt.conf}  # wait for the dpkg lock (hack/apt.conf)
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
IMAGES=$CACHE/real-node/images
WORK=$CACHE/src/images
VENV=${CITYHUB_VENV:-$ROOT/.venv}
PYTHON=$VENV/bin/python
OCI=("$PYTHON" "$ROOT/hack/oci_image.py")
# The Debian packages of the operator's base: python3.11 and the shared libraries its stdlib modules load.
BASE_PACKAGES=(
  libc6 libgcc-s1 zlib1g libssl3 libffi8 libexpat1 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libcrypt1
  libncursesw6 libtinfo6 libreadline8 readline-common media-types netbase
  libpython3.11-minimal python3.11-minimal libpython3.11-stdlib
)
APP_USER=65532
mkdir -p "$IMAGES" "$WORK"

FAILED=()
log() { printf '[images] %s\n' "$*" >&2; }
fail() { log "FAILED: $1"; FAILED+=("$1"); }
digest() { sha256sum | cut -c1-16; }
# A directory's files (names and contents), for telling whether a layer's inputs changed.
tree_digest() {
  (cd "$1" && find "${@:2}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z \
    | xargs -0 sha256sum) | digest
}
fresh() { [ -s "$1" ] && [ "$(cat "$2" 2>/dev/null)" = "$3" ]; }

passwd_files() {  # $1: root directory; $2: the image's user (default $APP_USER), named cityhub
  local uid=${2:-$APP_USER}
  mkdir -p "$1/etc" "$1/tmp" && chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\ncityhub:x:%s:%s:cityhub:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' \
    "$uid" "$uid" >"$1/etc/passwd"
  printf 'root:x:0:\ncityhub:x:%s:\nnogroup:x:65534:\n' "$uid" >"$1/etc/group"
}

build_nats() {
  local dir=$WORK/nats want t0=$SECONDS
  [ -x "$BIN/nats-server" ] || { fail "nats image: $BIN/nats-server not built (bash hack/toolchain.sh)"; return 1; }
  want="$NATS_IMAGE $(sha256sum <"$BIN/nats-server" | digest) $(digest <"$ROOT/hack/oci_image.py")"
  fresh "$IMAGES/nats.oci.tar" "$IMAGES/.nats.version" "$want" && return 0
  log "nats image: $NATS_IMAGE (nats-server $(cat "$BIN/.nats-server.version" 2>/dev/null))"
  rm -rf "$dir" && mkdir -p "$dir/rootfs/usr/local/bin" || return 1
  passwd_files "$dir/rootfs"
  cp "$BIN/nats-server" "$dir/rootfs/usr/local/bin/nats-server"
  "${OCI[@]}" --rootfs "$dir/rootfs" --name "$NATS_IMAGE" --entrypoint /usr/local/bin/nats-server \
    --user "$APP_USER:$APP_USER" --out "$IMAGES/nats.oci.tar" >&2 || { fail "nats image: pack"; return 1; }
  echo "$want" >"$IMAGES/.nats.version"
  log "  nats image built in $((SECONDS - t0))s"
}

# The candidate versions of Debian packages, as pkg=version in DEB_VERSIONS (apt-get update once when one is
# unknown); DEB_WANT: those and this script's digest, what a layer made of them records in its .inputs.
deb_versions() {
  local pkg version
  DEB_VERSIONS=()
  for pkg in "$@"; do
    version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
      apt-get update -qq >&2 || true
      version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/{print $2}')
    fi
    [ -n "$version" ] && [ "$version" != "(none)" ] || { log "apt knows no $pkg"; return 1; }
    DEB_VERSIONS+=("$pkg=$version")
  done
  DEB_WANT="${DEB_VERSIONS[*]} $(digest <"${BASH_SOURCE[0]}")"
}

# $1/rootfs made anew from the packages $2... (pkg=version): unpacked with dpkg -x, so no maintainer scripts
# run and no apt, dpkg or shell comes along; documentation dropped.
deb_unpack() {
  local dir=$1 deb
  shift
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/rootfs" || return 1
  (cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root "$@" >&2) || return 1
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/rootfs" || return 1; done
  rm -rf "$dir/rootfs/usr/share/"{doc,man,info,lintian,bug} "$dir/rootfs/etc/"{init.d,cron.daily}
}

# busybox's applets as links to /bin/busybox in root $1 (what the busybox package's postinst does not get to
# do when it is unpacked with dpkg -x).
busybox_links() {
  local root=$1 applet
  mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/sbin" || return 1
  for applet in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
}

# base: Debian's python3.11, unpacked. Prints nothing; fills $WORK/base/rootfs.
operator_base() {
  local dir=$WORK/base
  deb_versions "${BASE_PACKAGES[@]}" || return 1
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$DEB_WANT" ] && return 0
  log "operator base: ${#DEB_VERSIONS[@]} Debian packages (python3.11 $(printf '%s\n' "${DEB_VERSIONS[@]}" | sed -n 's/^python3.11-minimal=//p'))"
  deb_unpack "$dir" "${DEB_VERSIONS[@]}" || return 1
  ln -sf python3.11 "$dir/rootfs/usr/bin/python3" && ln -sf python3.11 "$dir/rootfs/usr/bin/python"
  passwd_files "$dir/rootfs"
  # The host's 3.11 writes the same .pyc format; hash-based, so the bytes do not depend on file times.
  "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$dir/rootfs" -p / \
    "$dir/rootfs/usr/lib/python3.11" >&2 || return 1
  echo "$DEB_WANT" >"$dir/.inputs"
}

# The operator's requirements: pyproject's dependencies without the stack's pulumi*, and each type's extras.
operator_requirements() {
  "$PYTHON" - "$ROOT" <<'EOF'
import sys, tomllib
from pathlib import Path
root = Path(sys.argv[1])
deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
lines = [d for d in deps if not d.lower().startswith("pulumi")]
for req in sorted(root.glob("component_types/*/requirements.txt")):
    lines += [line.strip() for line in req.read_text().splitlines() if line.strip() and not line.startswith("#")]
print("\n".join(lines))
EOF
}

operator_deps() {
  local dir=$WORK/deps want
  operator_requirements >"$WORK/requirements.txt" || return 1
  # Every transitive dependency at the version the project's .venv runs and tests.
  "$VENV/bin/pip" freeze --exclude-editable 2>/dev/null | grep -v -e '^-e ' -e ' @ ' >"$WORK/constraints.txt"
  want="$(cat "$WORK/requirements.txt" "$WORK/constraints.txt" | digest) $(digest <"${BASH_SOURCE[0]}")"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$want" ] && return 0
  log "operator deps: pip install $(wc -l <"$WORK/requirements.txt") requirements (constraints: the .venv)"
  rm -rf "$dir" && mkdir -p "$dir/rootfs" || return 1
  local target=$dir/rootfs/usr/lib/python3/dist-packages
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-compile --target "$target" \
    -r "$WORK/requirements.txt" -c "$WORK/constraints.txt" >&2 || return 1
  rm -rf "$target/bin"  # console scripts with the host's interpreter path: nothing runs them
  "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$dir/rootfs" -p / "$target" >&2 || return 1
  echo "$want" >"$dir/.inputs"
}

operator_app() {
  local dir=$WORK/app want src
  local sources=(pyproject.toml README.md cityhub cityhub_api cityhub_nats component_types components operator schemas)
  want="$(tree_digest "$ROOT" "${sources[@]}") $(digest <"${BASH_SOURCE[0]}")"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$want" ] && return 0
  log "operator app: the project's wheel"
  rm -rf "$dir" && mkdir -p "$dir/src" "$dir/wheel" "$dir/rootfs" || return 1
  # A copy of the sources: building in the checkout would leave build/ and egg-info there.
  (cd "$ROOT" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - "${sources[@]}") | tar -xf - -C "$dir/src" \
    || return 1
  SOURCE_DATE_EPOCH=0 "$VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps \
    -w "$dir/wheel" "$dir/src" >&2 || return 1
  local target=$dir/rootfs/usr/local/lib/python3.11/dist-packages
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-compile --target "$target" \
    "$dir"/wheel/*.whl >&2 || return 1
  rm -rf "$target/bin"
  "$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash -s "$dir/rootfs" -p / "$target" >&2 || return 1
  mkdir -p "$dir/rootfs/usr/local/share/cityhub" && cp -r "$dir/src/schemas" "$dir/rootfs/usr/local/share/cityhub/"
  echo "$want" >"$dir/.inputs"
}

# Imports the operator and every driver with the image's own python, in the assembled root (chroot).
operator_smoke_test() {
  local merged=$WORK/smoke
  [ "$(id -u)" = 0 ] || { log "  (not root: skipping the chroot import test)"; return 0; }
  rm -rf "$merged" && mkdir -p "$merged" || return 1
  cp -al "$WORK/base/rootfs/." "$merged/" && cp -al "$WORK/deps/rootfs/." "$merged/" \
    && cp -al "$WORK/app/rootfs/." "$merged/" || return 1
  CITYHUB_SCHEMAS_DIR=/usr/local/share/cityhub/schemas chroot --userspec=$APP_USER:$APP_USER "$merged" \
    /usr/bin/python3 -c '
import cityhub_operator.__main__, cityhub_api.registry as r
for t in r.component_types().values():
    t.load("driver")
print("imports ok:", ", ".join(sorted(r.component_types())))' >&2
  local rc=$?
  rm -rf "$merged"
  return $rc
}

build_operator() {
  local t0=$SECONDS want
  operator_base || { fail "operator image: base (Debian python3.11)"; return 1; }
  operator_deps || { fail "operator image: deps (pip install from PyPI)"; return 1; }
  operator_app || { fail "operator image: app (the project's wheel)"; return 1; }
  want="$OPERATOR_IMAGE $(cat "$WORK/base/.inputs" "$WORK/deps/.inputs" "$WORK/app/.inputs" \
    "$ROOT/hack/oci_image.py" | digest)"
  fresh "$IMAGES/operator.oci.tar" "$IMAGES/.operator.version" "$want" && return 0
  operator_smoke_test || { fail "operator image: importing the operator in the image's root"; return 1; }
  log "operator image: $OPERATOR_IMAGE"
  "${OCI[@]}" --rootfs "$WORK/base/rootfs" --rootfs "$WORK/deps/rootfs" --rootfs "$WORK/app/rootfs" \
    --name "$OPERATOR_IMAGE" --cmd=python --cmd=-m --cmd=cityhub_operator --user "$APP_USER:$APP_USER" \
    --env CITYHUB_SCHEMAS_DIR=/usr/local/share/cityhub/schemas --env PYTHONUNBUFFERED=1 \
    --env PYTHONDONTWRITEBYTECODE=1 --out "$IMAGES/operator.oci.tar" >&2 || { fail "operator image: pack"; return 1; }
  echo "$want" >"$IMAGES/.operator.version"
  log "  operator image built in $((SECONDS - t0))s"
}

# Each component type's own image, where it has one beside nats and the operator.
# shellcheck source=component_types/identity/image.sh
source "$ROOT/component_types/identity/image.sh"
# shellcheck source=component_types/maps/image.sh
source "$ROOT/component_types/maps/image.sh"
# shellcheck source=component_types/inference/image.sh
source "$ROOT/component_types/inference/image.sh"

if [ "${1:-}" = "--versions" ]; then
  for name in nats operator keycloak postgis martin mlserver models; do
    printf '%-28s %s\n' "$name image" "$( [ -s "$IMAGES/$name.oci.tar" ] \
      && echo "$(cut -d' ' -f1 "$IMAGES/.$name.version") $(du -h "$IMAGES/$name.oci.tar" | cut -f1)" \
      || echo 'not built')"
  done
  exit 0
fi

t0=$SECONDS
build_nats
build_operator
build_keycloak
build_postgis
build_martin
build_mlserver
build_models
log "images done in $((SECONDS - t0))s"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
