#!/usr/bin/env bash
# Opt-in: installs Debian's pinned headless browser and CJK fonts, which cityhub uses for two things only:
#   cityhub report --format pdf   the report's HTML printed to PDF by Chromium (`--print-to-pdf`); pure-PyPI
#                                 PDF libraries ship no CJK fonts, so 应急管理局 would print as boxes
#   tests                         the dashboard page loaded in headless Chromium, the PDF checked with
#                                 poppler's pdftoppm/pdftotext; they skip, naming this script, without it
# Not part of hack/toolchain.sh: Chromium and its libraries are ~300 MB the default toolchain does not need.
# Unlike hack/prometheus.sh the packages are installed with apt-get (Chromium needs its shared libraries and
# fontconfig needs the fonts registered), so this needs root. Idempotent: nothing happens when the pinned
# versions are installed. Run: sudo hack/browser.sh
set -euo pipefail
# Versions 'apt-cache policy chromium fonts-noto-cjk poppler-utils' lists on Debian 12 (bookworm);
# Chromium comes from bookworm-security, which replaces old versions: bump the pin when apt no longer has it.
CHROMIUM_DEB_VERSION=${CHROMIUM_DEB_VERSION:-156.0.8078.108-1~deb12u1}
FONTS_NOTO_CJK_DEB_VERSION=${FONTS_NOTO_CJK_DEB_VERSION:-1:20220127+repack1-1}
POPPLER_UTILS_DEB_VERSION=${POPPLER_UTILS_DEB_VERSION:-22.12.0-2+deb12u3}
PINS=(
  "chromium=$CHROMIUM_DEB_VERSION"
  "chromium-common=$CHROMIUM_DEB_VERSION"
  "fonts-noto-cjk=$FONTS_NOTO_CJK_DEB_VERSION"
  "poppler-utils=$POPPLER_UTILS_DEB_VERSION"
)

installed() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
missing=()
for pin in "${PINS[@]}"; do
  [ "$(installed "${pin%%=*}")" = "${pin#*=}" ] || missing+=("$pin")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[browser] needs root to apt-get install ${missing[*]}: run sudo $0" >&2
  exit 1
fi
echo "[browser] apt-get install ${missing[*]} (Debian)" >&2
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$1" 2>&1
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! apt_install "$log"; then
  # A fresh machine has no package lists yet (or old ones without the pinned security update): one update.
  apt-get update >/dev/null 2>&1 || true
  if ! apt_install "$log"; then
    tail -20 "$log" >&2
    echo "[browser] fix: make deb.debian.org reachable, or set CHROMIUM_DEB_VERSION (and the others) to" \
      "versions 'apt-cache policy chromium fonts-noto-cjk poppler-utils' lists" >&2
    exit 1
  fi
fi
chromium --version >&2
