#!/usr/bin/env bash
# Installs the pinned nginx and its njs module (Debian packages) for bench/peer_gateway.py: the prototype
# of the inference gateway's data path in a production proxy (bench/peer_gateway_nginx.py renders its
# config: njs hashes the presented key, a map of key hashes authorizes it, limit_req/limit_conn limit,
# proxy_pass routes). The bench runs its own nginx with its own config, prefix and pid file on a free
# loopback port; the package's service is not used. Benchmarks only: hack/toolchain.sh does not call it.
# Idempotent: skipped when dpkg has the pinned upstream versions.
set -euo pipefail
NGINX_VERSION=${NGINX_VERSION:-1.22.1}
NJS_VERSION=${NJS_VERSION:-0.7.9}
declare -A PIN=([nginx]=$NGINX_VERSION [libnginx-mod-http-js]=$NJS_VERSION)
want=()
for pkg in nginx libnginx-mod-http-js; do
  have=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null || true)
  [[ $have == "install ok installed ${PIN[$pkg]}"* ]] || want+=("$pkg")
done
[ ${#want[@]} = 0 ] && exit 0
echo "[peers] nginx $NGINX_VERSION, njs $NJS_VERSION: apt-get install ${want[*]}" >&2
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
c=$(candidate nginx)
if [ -z "$c" ] || [ "$c" = "(none)" ]; then apt-get update -q >/dev/null; fi
args=()
for pkg in "${want[@]}"; do
  offer=$(candidate "$pkg")
  [[ $offer == "${PIN[$pkg]}"* ]] || {
    echo "[peers] $pkg: Debian offers '$offer', the pin is ${PIN[$pkg]} (update the pin in $0)" >&2
    exit 1
  }
  args+=("$pkg=$offer")
done
# The bench runs its own nginx; the package must not start the system's on port 80. Where no policy-rc.d
# forbids service starts already, one does for the length of the install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${args[@]}" >/dev/null
nginx -v 2>&1 | head -1 >&2 || true
