#!/usr/bin/env bash
# Builds NACK's jetstream-controller (the peer of cityhub's messaging operator in bench/peer_nack.py) from
# the Go module proxy and installs it as ~/.cache/cityhub/bin/jetstream-controller (CITYHUB_CACHE overrides
# ~/.cache/cityhub). Benchmarks only: hack/toolchain.sh does not call it. Idempotent: skipped when the
# binary's stamp matches the pin.
#
# `go install .../cmd/jetstream-controller@v0.22.4` fails here: it first reads the module's version list for
# deprecations, which the proxy refuses (403). So the pinned module zip is downloaded (`go mod download`,
# which also gives the bench NACK's deploy/crds.yml) and built as its own main module, with its own go.mod
# and go.sum: the same dependency versions `go install` would use.
set -euo pipefail
NACK_VERSION=${NACK_VERSION:-0.22.4}
CACHE=${CITYHUB_CACHE:-$HOME/.cache/cityhub}
BIN=$CACHE/bin
v=v$NACK_VERSION
mkdir -p "$BIN"
if [ -x "$BIN/jetstream-controller" ] && [ "$(cat "$BIN/.jetstream-controller.version" 2>/dev/null)" = "$v" ]; then
  exit 0
fi
echo "[peers] nack jetstream-controller $v: go mod download github.com/nats-io/nack@$v + go build" >&2
src=$(GOTOOLCHAIN=local go mod download -json "github.com/nats-io/nack@$v" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "[peers] nack $v: go mod download gave no source directory" >&2; exit 1; }
build=$CACHE/peers/nack-$v
rm -rf "$build" && mkdir -p "$build" && cp -r "$src/." "$build/" && chmod -R u+w "$build"
(cd "$build" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
  -ldflags "-s -w -X main.Version=$NACK_VERSION" -o "$BIN/jetstream-controller" ./cmd/jetstream-controller)
rm -rf "$build"
echo "$v" >"$BIN/.jetstream-controller.version"
"$BIN/jetstream-controller" --version
