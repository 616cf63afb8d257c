# A throw-away PostgreSQL cluster for scripts/test and scripts/bench. Source it; do not run it.
#
#   pg_find_bin                sets pg_bin to the newest installed server's bin directory ("" if none)
#   pg_start_cluster           initdb + start on a free loopback port: sets pg_dir, pg_port, PG_URL
#                              (postgres://postgres@127.0.0.1:PORT/postgres); fails loudly
#   pg_stop_cluster            stops it and removes its directory (safe to call twice, for traps)
#
# Trust authentication, loopback only, its socket in its own directory. initdb refuses to run as
# root, so as root it runs as the `postgres` user (the Debian package creates it), in a directory
# that user owns. fsync is off: the cluster is thrown away, and durability across an OS crash is
# not what is measured or tested.

pg_find_bin() {
  pg_bin=""
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && pg_bin="$dir"
  done
  return 0
}

pg_dir=""
pg_as=()

pg_start_cluster() {
  pg_find_bin
  [ -n "$pg_bin" ] || { echo "PostgreSQL (Debian package postgresql) is required: no initdb under /usr/lib/postgresql/*/bin" >&2; return 1; }
  pg_dir=$(mktemp -d /tmp/latchkey-pg.XXXXXX)
  chmod 0755 "$pg_dir"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "the postgres user is missing (reinstall the postgresql package)" >&2; return 1; }
    chown postgres "$pg_dir"
    pg_as=(runuser -u postgres --)
  fi
  "${pg_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; echo "initdb failed" >&2; return 1; }
  pg_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$pg_dir/server.log" >&2; echo "PostgreSQL did not start" >&2; return 1; }
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres -t 10 \
    || { cat "$pg_dir/server.log" >&2; echo "PostgreSQL does not answer on 127.0.0.1:$pg_port" >&2; return 1; }
  PG_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
}

pg_stop_cluster() {
  if [ -n "$pg_dir" ]; then
    "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
    pg_dir=""
  fi
}
