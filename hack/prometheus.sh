#!/usr/bin/env bash
# Installs Debian's pinned prometheus package's two binaries, prometheus and promtool, into
# $CITYHUB_BIN (default ~/.cache/cityhub/bin): the monitoring rules' checker (promtool check/test rules)
# and the real Prometheus the monitoring integration test scrapes the operator with.
# The .deb is only unpacked (dpkg -x), never installed, so no system service starts and no root is needed.
# Idempotent: skipped when the stamp matches the pin. Called from hack/toolchain.sh.
set -euo pipefail
PROMETHEUS_DEB_VERSION=${PROMETHEUS_DEB_VERSION:-2.42.0+ds-5+deb12u1}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=${CITYHUB_BIN:-$CACHE/bin}
STAMP=$BIN/.prometheus.version
mkdir -p "$BIN"
if [ -x "$BIN/prometheus" ] && [ -x "$BIN/promtool" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$PROMETHEUS_DEB_VERSION" ]; then
  exit 0
fi
echo "[toolchain] prometheus $PROMETHEUS_DEB_VERSION: apt-get download prometheus (Debian)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() { (cd "$work" && apt-get download "prometheus=$PROMETHEUS_DEB_VERSION") >/dev/null 2>"$work/err"; }
if ! fetch; then
  # A fresh machine has no package lists yet; one update, then one more try.
  apt-get update >/dev/null 2>&1 || true
  if ! fetch; then
    echo "[toolchain] cannot download Debian package prometheus=$PROMETHEUS_DEB_VERSION:" >&2
    cat "$work/err" >&2
    echo "[toolchain] fix: make deb.debian.org reachable, or set PROMETHEUS_DEB_VERSION to a version" \
      "that 'apt-cache policy prometheus' lists" >&2
    exit 1
  fi
fi
dpkg -x "$work"/prometheus_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$BIN/"
echo "$PROMETHEUS_DEB_VERSION" >"$STAMP"
"$BIN/promtool" --version 2>&1 | head -1 >&2
