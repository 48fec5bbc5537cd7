#!/usr/bin/env bash
# Builds the pinned Sloth (SLO rule generator, the peer of components/monitoring_rules.py in
# bench/peer_slo.py) from the Go module proxy and installs it as ~/.cache/cityhub/bin/sloth
# (CITYHUB_CACHE overrides ~/.cache/cityhub). Benchmarks only: hack/toolchain.sh does not call it.
# Idempotent: skipped when the binary's stamp matches the pin.
set -euo pipefail
SLOTH_VERSION=${SLOTH_VERSION:-0.16.0}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
v=v$SLOTH_VERSION
mkdir -p "$BIN"
if [ -x "$BIN/sloth" ] && [ "$(cat "$BIN/.sloth.version" 2>/dev/null)" = "$v" ]; then
  exit 0
fi
echo "[peers] sloth $v: go install github.com/slok/sloth/cmd/sloth@$v" >&2
# The version variable is stamped so `sloth version` and the rules' sloth_version label say v0.16.0, not "dev".
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath \
  -ldflags "-s -w -X github.com/slok/sloth/internal/info.Version=$v" \
  "github.com/slok/sloth/cmd/sloth@$v"
echo "$v" >"$BIN/.sloth.version"
"$BIN/sloth" version 2>/dev/null | head -1 >&2
