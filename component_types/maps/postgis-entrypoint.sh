#!/bin/sh
# The PostGIS image's entrypoint (component_types/maps/image.sh): the part of the upstream postgres image's
# docker-entrypoint.sh the maps backend relies on. On an empty $PGDATA: initdb with $POSTGRES_USER and
# $POSTGRES_PASSWORD (password auth over TCP, trust on the local socket), create $POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sql with psql (stop at the first error), stop. Then run the server in the
# foreground on every address. Runs as the image's user (999), never as root.
# Unlike upstream, the first initialisation happens beside $PGDATA and moves into place only when every
# script succeeded: a failed one leaves no half-made database that the restarted container would then serve
# without ever running the scripts again.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
SOCKETS=/var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgis-entrypoint: POSTGRES_PASSWORD is empty; set it (the superuser's password) for the first start" >&2
    exit 1
  fi
  # Beside $PGDATA; in it when it already is a directory (a volume's mount point), emptied on failure.
  work="$PGDATA.init"
  [ -d "$PGDATA" ] && work=$PGDATA
  [ "$work" = "$PGDATA" ] || rm -rf "$work"
  mkdir -p "$work" && chmod 700 "$work"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$work" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$work/pg_hba.conf"
  pg_ctl -D "$work" -o "-c listen_addresses='' -c unix_socket_directories=$SOCKETS" -w start
  # On a failed script: stop the temporary server, keep nothing, exit non-zero (the pod restarts).
  # (busybox's find has no -delete: the data directory holds no dot files.)
  trap 'pg_ctl -D "$work" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "${work:?}"/*' EXIT
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -h "$SOCKETS" -U "$POSTGRES_USER" -d postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "postgis-entrypoint: running $f"
    psql -v ON_ERROR_STOP=1 -h "$SOCKETS" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f"
  done
  pg_ctl -D "$work" -m fast -w stop
  trap - EXIT
  [ "$work" = "$PGDATA" ] || mv "$work" "$PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$SOCKETS" "$@"
