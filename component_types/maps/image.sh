# shellcheck shell=bash
# The maps backend's images, built offline. Sourced by hack/images.sh (its helpers: log, fail, digest, fresh,
# passwd_files, deb_versions, deb_unpack, busybox_links, $OCI, $WORK, $IMAGES, $BIN); not run alone.
#
#   $POSTGIS_IMAGE  PostgreSQL 15 + PostGIS 3 from Debian: the packages of the server, psql and pg_isready,
#                   the postgis extension and the shared libraries those load (found with ldd on what
#                   install.sh installed; without the raster and JIT modules, which pull GDAL and LLVM),
#                   proj-data (ST_Transform) and tzdata, busybox for the entrypoint
#                   (postgis-entrypoint.sh: the upstream postgres image's POSTGRES_* and
#                   /docker-entrypoint-initdb.d contract, as the backend uses it); user 999
#   $MARTIN_IMAGE   the martin install.sh built from crates.io, on glibc from Debian; user 65532

POSTGIS_USER=999
POSTGIS_PACKAGES=(postgresql-15 postgresql-client-15 postgresql-15-postgis-3 postgresql-15-postgis-3-scripts
  proj-data tzdata busybox-static)
PG_HOME=/usr/lib/postgresql/15

# The Debian packages of the shared libraries the server, its clients and the postgis modules load.
postgis_libraries() {
  local files=("$PG_HOME"/bin/{postgres,initdb,pg_ctl,psql,pg_isready})
  local so
  for so in "$PG_HOME"/lib/*.so; do
    case "$so" in *raster* | *llvmjit*) ;; *) files+=("$so") ;; esac
  done
  [ -x "$PG_HOME/bin/postgres" ] || { log "no $PG_HOME/bin/postgres (bash component_types/maps/install.sh)"; return 1; }
  ldd "${files[@]}" 2>/dev/null | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
    dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"
  done | cut -d: -f1 | sort -u
}

postgis_rootfs() {
  local dir=$WORK/postgis libs
  libs=$(postgis_libraries) || return 1
  # shellcheck disable=SC2086  # one package a word
  deb_versions "${POSTGIS_PACKAGES[@]}" $libs || return 1
  DEB_WANT="$DEB_WANT $(cat "$ROOT/component_types/maps/postgis-entrypoint.sh" "${BASH_SOURCE[0]}" | digest)"
  [ -d "$dir/rootfs" ] && [ "$(cat "$dir/.inputs" 2>/dev/null)" = "$DEB_WANT" ] && return 0
  log "postgis: ${#DEB_VERSIONS[@]} Debian packages ($(printf '%s\n' "${DEB_VERSIONS[@]}" | grep '^postgresql-15-postgis-3='))"
  deb_unpack "$dir" "${DEB_VERSIONS[@]}" || return 1
  local root=$dir/rootfs
  rm -f "$root$PG_HOME"/lib/{postgis_raster,llvmjit}*.so && rm -rf "$root$PG_HOME/lib/bitcode"
  # What the scripts package's postinst does with update-alternatives: postgis.control → postgis-3.control.
  local ext=$root/usr/share/postgresql/15/extension control
  rm -f "$ext"/postgis_raster*
  for control in "$ext"/*-3.control; do
    ln -sf "$(basename "$control")" "${control%-3.control}.control"
  done
  busybox_links "$root" || return 1
  # pg_isready and psql look for the server's socket here (Debian's default); the server runs as 999.
  mkdir -p "$root/var/run/postgresql" "$root/docker-entrypoint-initdb.d" && chmod 1777 "$root/var/run/postgresql"
  mkdir -p "$root/usr/local/bin" || return 1
  install -m 0755 "$ROOT/component_types/maps/postgis-entrypoint.sh" "$root/usr/local/bin/postgis-entrypoint"
  # On PATH, as in the upstream image (the readiness probe runs pg_isready).
  local tool
  for tool in postgres initdb pg_ctl psql pg_isready; do ln -s "$PG_HOME/bin/$tool" "$root/usr/local/bin/$tool"; done
  passwd_files "$root" "$POSTGIS_USER"
  echo "$DEB_WANT" >"$dir/.inputs"
}

build_postgis() {
  local t0=$SECONDS want
  postgis_rootfs || { fail "postgis image: Debian PostgreSQL 15 + PostGIS"; return 1; }
  want="$POSTGIS_IMAGE $(cat "$WORK/postgis/.inputs" "$ROOT/hack/oci_image.py" "${BASH_SOURCE[0]}" | digest)"
  fresh "$IMAGES/postgis.oci.tar" "$IMAGES/.postgis.version" "$want" && return 0
  log "postgis image: $POSTGIS_IMAGE"
  "${OCI[@]}" --rootfs "$WORK/postgis/rootfs" --name "$POSTGIS_IMAGE" --entrypoint /usr/local/bin/postgis-entrypoint \
    --user "$POSTGIS_USER:$POSTGIS_USER" --env PGDATA=/var/lib/postgresql/data --out "$IMAGES/postgis.oci.tar" >&2 \
    || { fail "postgis image: pack"; return 1; }
  echo "$want" >"$IMAGES/.postgis.version"
  log "  postgis image built in $((SECONDS - t0))s"
}

build_martin() {
  local dir=$WORK/martin want t0=$SECONDS
  [ -x "$BIN/martin" ] || { fail "martin image: $BIN/martin not built (bash component_types/maps/install.sh)"; return 1; }
  deb_versions libc6 libgcc-s1 || { fail "martin image: glibc"; return 1; }
  want="$MARTIN_IMAGE $DEB_WANT $(digest <"$BIN/martin") $(cat "$ROOT/hack/oci_image.py" "${BASH_SOURCE[0]}" | digest)"
  fresh "$IMAGES/martin.oci.tar" "$IMAGES/.martin.version" "$want" && return 0
  log "martin image: $MARTIN_IMAGE ($(cat "$BIN/.maps.version" 2>/dev/null))"
  deb_unpack "$dir" "${DEB_VERSIONS[@]}" || { fail "martin image: glibc"; return 1; }
  mkdir -p "$dir/rootfs/usr/local/bin" && cp "$BIN/martin" "$dir/rootfs/usr/local/bin/martin"
  passwd_files "$dir/rootfs"
  "${OCI[@]}" --rootfs "$dir/rootfs" --name "$MARTIN_IMAGE" --entrypoint /usr/local/bin/martin \
    --user "$APP_USER:$APP_USER" --out "$IMAGES/martin.oci.tar" >&2 || { fail "martin image: pack"; return 1; }
  echo "$want" >"$IMAGES/.martin.version"
  log "  martin image built in $((SECONDS - t0))s"
}
