#!/usr/bin/env bash
# Installs the pinned wrk (HTTP load generator, Debian package) for bench/peer_gateway.py: the inference
# gateway vs MLServer direct vs the nginx prototype, each driven by the same wrk + Lua script.
# Benchmarks only: hack/toolchain.sh does not call it. Idempotent: skipped when dpkg has the pinned version.
set -euo pipefail
WRK_VERSION=${WRK_VERSION:-4.1.0}
have=$(dpkg-query -W -f='${Status} ${Version}' wrk 2>/dev/null || true)
if [[ $have == "install ok installed $WRK_VERSION"* ]]; then
  exit 0
fi
echo "[peers] wrk $WRK_VERSION: apt-get install wrk" >&2
candidate() { apt-cache policy wrk 2>/dev/null | awk '/Candidate:/ {print $2}'; }
c=$(candidate)
if [ -z "$c" ] || [ "$c" = "(none)" ]; then apt-get update -q >/dev/null; c=$(candidate); fi
[[ $c == "$WRK_VERSION"* ]] || {
  echo "[peers] wrk: Debian offers '$c', the pin is $WRK_VERSION (update WRK_VERSION in $0)" >&2
  exit 1
}
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "wrk=$c" >/dev/null
wrk --version 2>&1 | head -1 >&2 || true
