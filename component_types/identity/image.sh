# shellcheck shell=bash
# The identity backend's image, $KEYCLOAK_IMAGE (hack/versions.env): Keycloak as the cluster runs it, built
# offline. Sourced by hack/images.sh (its helpers: log, fail, digest, fresh, passwd_files, deb_versions,
# deb_unpack, busybox_links, $OCI, $WORK, $IMAGES, $CACHE); not run alone.
#
#   base      Debian's Java 17 runtime (openjdk-17-jre-headless and the libraries libjvm loads) and
#             busybox-static with its applets as links: kc.sh is a POSIX sh script calling uname, readlink,
#             dirname, sed, expr, xargs and printf; no apt, dpkg or bash. Java's trust store is the one
#             ca-certificates-java made on this machine from Debian's ca-certificates (Keycloak refuses
#             to start without a system trust store; it is what its outgoing TLS trusts)
#   keycloak  the distribution component_types/identity/install.sh unpacked from Maven Central and pre-built
#             ("kc.sh build") for keycloak.BUILD_OPTIONS (dev-file database, health endpoints): `kc.sh start`
#             in the cluster then finds nothing to rebuild, so /opt/keycloak stays read-only; its data
#             directory is the pod's volume
#   user 1000, as the upstream quay.io/keycloak image: the Deployment runs either one as that user.
#
# An external PostgreSQL (cityhub:backends.identity.databaseUrl) changes a build option (--db=postgres):
# Keycloak then rebuilds at start, which needs a writable /opt/keycloak/lib — use the upstream image for it.

KEYCLOAK_USER=1000
KEYCLOAK_PACKAGES=(openjdk-17-jre-headless libc6 zlib1g libstdc++6 libgcc-s1 busybox-static)
KEYCLOAK_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
KEYCLOAK_CACERTS=/etc/ssl/certs/java/cacerts

keycloak_base() {
  local dir=$WORK/keycloak-base
  deb_versions "${KEYCLOAK_PACKAGES[@]}" || return 1
  [ -s "$KEYCLOAK_CACERTS" ] || { log "no $KEYCLOAK_CACERTS (apt-get install ca-certificates-java)"; return 1; }
  DEB_WANT="$DEB_WANT cacerts:$(digest <"$KEYCLOAK_CACERTS") $(digest <"${BASH_SOURCE[0]}")"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$DEB_WANT" ] && return 0
  log "keycloak base: ${#DEB_VERSIONS[@]} Debian packages ($(printf '%s\n' "${DEB_VERSIONS[@]}" | grep '^openjdk'))"
  deb_unpack "$dir" "${DEB_VERSIONS[@]}" || return 1
  busybox_links "$dir/rootfs" || return 1
  mkdir -p "$dir/rootfs${KEYCLOAK_CACERTS%/*}" && cp "$KEYCLOAK_CACERTS" "$dir/rootfs$KEYCLOAK_CACERTS" || return 1
  # Without update-alternatives, java is found through JAVA_HOME (kc.sh reads it).
  [ -x "$dir/rootfs$KEYCLOAK_JAVA_HOME/bin/java" ] || { log "no java in openjdk-17-jre-headless?"; return 1; }
  echo "$DEB_WANT" >"$dir/.inputs"
}

keycloak_dist() {  # $1: the Keycloak version
  local dir=$WORK/keycloak-dist home=$CACHE/keycloak/$1 want
  [ -x "$home/bin/kc.sh" ] || { log "Keycloak $1 is not installed in $home (bash component_types/identity/install.sh)"; return 1; }
  want="$1 $(cat "$home/.cityhub-build" 2>/dev/null) $(tree_digest "$home" lib bin conf providers themes)"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$want" ] && return 0
  log "keycloak dist: $home ($(cat "$home/.cityhub-build"))"
  rm -rf "$dir" && mkdir -p "$dir/rootfs/opt/keycloak/data" || return 1
  cp -a "$home/"{bin,conf,lib,providers,themes,version.txt,LICENSE.txt} "$dir/rootfs/opt/keycloak/" || return 1
  passwd_files "$dir/rootfs" "$KEYCLOAK_USER"
  echo "$want" >"$dir/.inputs"
}

# The assembled root answers: busybox's sh runs, and the image's java starts as the image's user.
keycloak_smoke_test() {
  local merged=$WORK/keycloak-smoke out
  [ "$(id -u)" = 0 ] || { log "  (not root: skipping the chroot test)"; return 0; }
  if mountpoint -q "$merged/proc"; then umount "$merged/proc" || return 1; fi
  rm -rf "$merged" && mkdir -p "$merged" || return 1
  cp -al "$WORK/keycloak-base/rootfs/." "$merged/" && cp -al "$WORK/keycloak-dist/rootfs/." "$merged/" || return 1
  # java finds libjli.so through $ORIGIN, which glibc reads from /proc/self/exe.
  mkdir -p "$merged/proc" && mount -t proc proc "$merged/proc" || return 1
  out=$(chroot --userspec=$KEYCLOAK_USER:$KEYCLOAK_USER "$merged" /bin/sh -c \
    "readlink -f /opt/keycloak/bin/kc.sh && $KEYCLOAK_JAVA_HOME/bin/java -version" 2>&1)
  local rc=$?
  # Never remove the tree while proc is mounted in it.
  umount "$merged/proc" || { log "cannot unmount $merged/proc; left in place"; return 1; }
  rm -rf "$merged"
  log "  $(echo "$out" | tr '\n' ' ' | cut -c1-120)"
  return $rc
}

build_keycloak() {
  local t0=$SECONDS want version=${KEYCLOAK_IMAGE##*:}
  keycloak_base || { fail "keycloak image: base (Debian Java 17 + busybox)"; return 1; }
  keycloak_dist "$version" || { fail "keycloak image: the pre-built distribution"; return 1; }
  want="$KEYCLOAK_IMAGE $(cat "$WORK/keycloak-base/.inputs" "$WORK/keycloak-dist/.inputs" \
    "$ROOT/hack/oci_image.py" "${BASH_SOURCE[0]}" | digest)"
  fresh "$IMAGES/keycloak.oci.tar" "$IMAGES/.keycloak.version" "$want" && return 0
  keycloak_smoke_test || { fail "keycloak image: java in the image's root"; return 1; }
  log "keycloak image: $KEYCLOAK_IMAGE"
  "${OCI[@]}" --rootfs "$WORK/keycloak-base/rootfs" --rootfs "$WORK/keycloak-dist/rootfs" \
    --name "$KEYCLOAK_IMAGE" --entrypoint /opt/keycloak/bin/kc.sh --user "$KEYCLOAK_USER:$KEYCLOAK_USER" \
    --env JAVA_HOME=$KEYCLOAK_JAVA_HOME --env KC_RUN_IN_CONTAINER=true --workdir /opt/keycloak \
    --out "$IMAGES/keycloak.oci.tar" >&2 || { fail "keycloak image: pack"; return 1; }
  echo "$want" >"$IMAGES/.keycloak.version"
  log "  keycloak image built in $((SECONDS - t0))s"
}
