#!/usr/bin/env bash
# Installs the identity backend of the cityhub operator: Keycloak (the city's OIDC provider), the pinned
# server distribution from Maven Central (org.keycloak:keycloak-quarkus-dist), checked against a pinned
# SHA-256, unpacked to $CITYHUB_CACHE/keycloak/<version> and pre-built ("kc.sh build") for the options the
# tests and the local server use (dev-file database, health endpoints), so a start needs no
# re-augmentation. Needs Java 17+ (Debian's openjdk-17-jre-headless is installed when java is missing).
# Then it starts Keycloak once to make the initial database that local Keycloaks copy (a fresh database
# costs ~40 s per start; see component_types/identity/local.py).
# Idempotent: skipped when the stamp matches version and build options. Called from hack/toolchain.sh.
set -euo pipefail
# The version and the build options are kept in sync with component_types/identity/keycloak.py (VERSION,
# BUILD_OPTIONS): a local start runs `kc.sh start --optimized`, which needs exactly this build.
# tests/unit/test_identity_backend.py checks that they agree.
KEYCLOAK_VERSION=${KEYCLOAK_VERSION:-26.0.8}
KEYCLOAK_SHA256=${KEYCLOAK_SHA256:-d82a52098db41f036bcfe8f2ebfd9251781c8af5959af8714e8aa9b311081786}
BUILD_OPTIONS=(--db=dev-file --health-enabled=true)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
PY=${CITYHUB_VENV:-$ROOT/.venv}/bin/python
TEMPLATE=$CACHE/keycloak/template-$KEYCLOAK_VERSION
HOME_DIR=$CACHE/keycloak/$KEYCLOAK_VERSION
STAMP=$HOME_DIR/.cityhub-build
WANT="$KEYCLOAK_VERSION ${BUILD_OPTIONS[*]}"
log() { printf '[toolchain] %s\n' "$*" >&2; }
template() {
  [ -f "$TEMPLATE/admin-secret" ] && return 0
  [ -x "$PY" ] || { log "keycloak: no Python venv at $PY yet; the first test run makes the template"; return 0; }
  log "keycloak $KEYCLOAK_VERSION: first start, to make the initial database ($TEMPLATE)"
  (cd "$ROOT" && CITYHUB_CACHE=$CACHE PYTHONPATH=$ROOT "$PY" -m component_types.identity.local template >/dev/null)
}

if [ -x "$HOME_DIR/bin/kc.sh" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  template
  exit 0
fi
if ! command -v java >/dev/null 2>&1; then
  log "keycloak: java not found; apt-get install openjdk-17-jre-headless"
  apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openjdk-17-jre-headless >/dev/null; } \
    || { log "keycloak: cannot install Java 17 (apt-get install openjdk-17-jre-headless failed)"; exit 1; }
fi
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
if [ "${java_major:-0}" -lt 17 ]; then
  log "keycloak $KEYCLOAK_VERSION needs Java 17 or newer; 'java -version' says ${java_major:-nothing}"
  exit 1
fi

zip=$CACHE/downloads/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip
url=https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip
mkdir -p "$CACHE/downloads" "$CACHE/keycloak"
if [ ! -f "$zip" ] || ! echo "$KEYCLOAK_SHA256  $zip" | sha256sum -c --quiet - 2>/dev/null; then
  log "keycloak $KEYCLOAK_VERSION: download keycloak-quarkus-dist from Maven Central"
  curl -fsSL --retry 3 -o "$zip.part" "$url" \
    || { log "keycloak: download failed: $url (is Maven Central reachable?)"; exit 1; }
  mv "$zip.part" "$zip"
fi
if ! echo "$KEYCLOAK_SHA256  $zip" | sha256sum -c --quiet - >/dev/null 2>&1; then
  log "keycloak: $zip does not match the pinned SHA-256 $KEYCLOAK_SHA256; delete it and retry"
  exit 1
fi
log "keycloak $KEYCLOAK_VERSION: unpack and build (${BUILD_OPTIONS[*]})"
work=$(mktemp -d "$CACHE/keycloak/.unpack.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && unzip -q "$zip")
rm -rf "$HOME_DIR"
mv "$work/keycloak-$KEYCLOAK_VERSION" "$HOME_DIR"
JAVA_OPTS_APPEND="-Xmx512m" "$HOME_DIR/bin/kc.sh" build "${BUILD_OPTIONS[@]}" >"$HOME_DIR/build.log" 2>&1 \
  || { log "keycloak: kc.sh build failed; see $HOME_DIR/build.log"; tail -20 "$HOME_DIR/build.log" >&2; exit 1; }
echo "$WANT" >"$STAMP"
rm -rf "$TEMPLATE"
template
log "keycloak $KEYCLOAK_VERSION ready in $HOME_DIR"
