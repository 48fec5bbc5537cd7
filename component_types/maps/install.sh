#!/usr/bin/env bash
# Installs the maps backend of the cityhub operator:
#   - PostGIS: Debian bookworm's pinned postgresql-15-postgis-3 (pulls postgresql-15); the embedded default
#     and the tests start their own server from /usr/lib/postgresql/15/bin (local.py), so the Debian cluster
#     service is not used.
#   - martin (maplibre's vector tile server, crates.io), built with `cargo install --locked` and only the
#     postgres feature (no web UI, no MBTiles/PMTiles/sprites/fonts: half the crates, a few minutes cold),
#     installed as $CITYHUB_BIN/martin. Cargo's target directory is kept under $CITYHUB_CACHE so a changed
#     pin rebuilds only what changed.
# Idempotent: skipped when the stamp matches both pins. Called from hack/toolchain.sh.
set -euo pipefail
POSTGIS_DEB_VERSION=${POSTGIS_DEB_VERSION:-3.3.2+dfsg-1+b1}
MARTIN_VERSION=${MARTIN_VERSION:-1.14.0}
MARTIN_FEATURES=${MARTIN_FEATURES:-postgres}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=${CITYHUB_BIN:-$CACHE/bin}
STAMP=$BIN/.maps.version
WANT="postgis=$POSTGIS_DEB_VERSION martin=$MARTIN_VERSION features=$MARTIN_FEATURES"
log() { printf '[toolchain] %s\n' "$*" >&2; }
mkdir -p "$BIN"

postgis_installed() {
  [ "$(dpkg-query -W -f='${Version}' postgresql-15-postgis-3 2>/dev/null)" = "$POSTGIS_DEB_VERSION" ] \
    && [ -x /usr/lib/postgresql/15/bin/postgres ]
}

if postgis_installed && [ -x "$BIN/martin" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi

if ! postgis_installed; then
  log "maps: apt-get install postgresql-15-postgis-3=$POSTGIS_DEB_VERSION (Debian)"
  install_postgis() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "postgresql-15-postgis-3=$POSTGIS_DEB_VERSION" >/dev/null 2>"$1"
  }
  err=$(mktemp)
  trap 'rm -f "$err"' EXIT
  if ! install_postgis "$err"; then
    # A fresh machine has no package lists yet; one update, then one more try.
    apt-get update -q >/dev/null 2>&1 || true
    if ! install_postgis "$err"; then
      log "maps: cannot install postgresql-15-postgis-3=$POSTGIS_DEB_VERSION:"
      cat "$err" >&2
      log "fix: run as root with Debian's package lists reachable, or set POSTGIS_DEB_VERSION to a" \
        "version 'apt-cache policy postgresql-15-postgis-3' lists"
      exit 1
    fi
  fi
  # Debian's package starts a cluster service on 5432; nothing here uses it, so it is stopped.
  if command -v pg_ctlcluster >/dev/null 2>&1; then pg_ctlcluster 15 main stop >/dev/null 2>&1 || true; fi
fi

if ! { [ -x "$BIN/martin" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; }; then
  command -v cargo >/dev/null 2>&1 || { log "maps: cargo not found: install Rust to build martin"; exit 1; }
  log "maps: cargo install martin $MARTIN_VERSION --features $MARTIN_FEATURES (crates.io; a few minutes cold)"
  root=$CACHE/martin/$MARTIN_VERSION
  mkdir -p "$CACHE/martin"
  CARGO_TARGET_DIR=$CACHE/martin/target cargo install martin --version "$MARTIN_VERSION" --locked \
    --no-default-features --features "$MARTIN_FEATURES" --root "$root" >"$CACHE/martin/build.log" 2>&1 \
    || { log "maps: building martin failed; see $CACHE/martin/build.log"
      tail -20 "$CACHE/martin/build.log" >&2
      exit 1; }
  install -m 0755 "$root/bin/martin" "$BIN/martin"
fi
echo "$WANT" >"$STAMP"
log "maps: $("$BIN/martin" --version 2>&1 | head -1), PostGIS $POSTGIS_DEB_VERSION"
