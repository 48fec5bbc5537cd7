#!/usr/bin/env bash
# Builds the pinned nats-server (the messaging backend of the cityhub operator) from the Go module proxy
# and installs it as ~/.cache/cityhub/bin/nats-server (CITYHUB_CACHE overrides ~/.cache/cityhub).
# Idempotent: skipped when the binary's stamp matches the pin. Meant to be called from hack/toolchain.sh.
set -euo pipefail
NATS_SERVER_VERSION=${NATS_SERVER_VERSION:-2.15.2}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
v=v$NATS_SERVER_VERSION
mkdir -p "$BIN"
if [ -x "$BIN/nats-server" ] && [ "$(cat "$BIN/.nats-server.version" 2>/dev/null)" = "$v" ]; then
  exit 0
fi
echo "[toolchain] nats-server $v: go install github.com/nats-io/nats-server/v2@$v" >&2
GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
  "github.com/nats-io/nats-server/v2@$v"
echo "$v" >"$BIN/.nats-server.version"
"$BIN/nats-server" --version
