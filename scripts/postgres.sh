#!/usr/bin/env bash
# PostgreSQL for `keyledger bench`'s validate-postgres scenario: a private
# cluster on loopback, from Debian's packages.
#
#   scripts/postgres.sh [DIR [PORT]]   install if missing, initialise DIR
#                                      (default /tmp/keyledger-pg), start it on
#                                      127.0.0.1:PORT (default 54329, or the
#                                      next free port), create the database
#                                      keyledger_bench, print its DSN last
#   scripts/postgres.sh stop [DIR]     stop the cluster in DIR
#
# Re-running with the cluster already up only prints the DSN. The cluster
# keeps PostgreSQL's durable defaults (fsync and synchronous_commit on); only
# memory and connection settings are sized for a benchmark. The user postgres
# connects without a password from 127.0.0.1 (trust): it is a scratch
# cluster for measurements, listening on loopback only. Progress goes to
# stderr; stdout carries the DSN alone, so DSN=$(scripts/postgres.sh) works.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

cmd=start
if [ "${1:-}" = "stop" ] || [ "${1:-}" = "start" ]; then
  cmd=$1
  shift
fi
case "${1:-}" in -h | --help)
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
  ;;
esac
DIR=${1:-/tmp/keyledger-pg}
PORT=${2:-54329}
DB=keyledger_bench
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
case "$PORT" in '' | *[!0-9]*) die "port must be a number, not '$PORT'" ;; esac

# as_pg runs a command as the cluster's owner: initdb and postgres refuse
# to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# bindir prints PostgreSQL's bin folder: the version that made DIR if it
# exists, else the newest installed.
bindir() {
  if [ -f "$DIR/PG_VERSION" ]; then
    local v
    v=$(cat "$DIR/PG_VERSION")
    [ -x "/usr/lib/postgresql/$v/bin/postgres" ] || die "$DIR was made by PostgreSQL $v, which is not installed"
    echo "/usr/lib/postgresql/$v/bin"
    return
  fi
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$b" ] && [ -x "$b/initdb" ] && echo "$b"
}

install_postgres() {
  [ -n "$(bindir)" ] && return
  say "installing PostgreSQL from Debian's packages"
  local sudo=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed and installing it needs root"
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq postgresql >&2
  [ -n "$(bindir)" ] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb was found"
}

# running prints the port of the cluster in DIR if its postmaster is up.
running() {
  local bin=$1
  [ -f "$DIR/postmaster.pid" ] || return 1
  as_pg "$bin/pg_ctl" status -D "$DIR" >/dev/null 2>&1 || return 1
  sed -n '4p' "$DIR/postmaster.pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() {
  local bin=$1 port=$2
  for _ in $(seq 1 100); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
      return 0
    fi
    sleep 0.1
  done
  die "PostgreSQL did not accept connections on 127.0.0.1:$port; see $DIR/server.log"
}

ensure_db() {
  local bin=$1 port=$2
  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
  if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE $DB" >/dev/null
    say "created database $DB"
  fi
}

stop() {
  local bin
  if [ ! -f "$DIR/PG_VERSION" ]; then
    say "no cluster in $DIR"
    return 0
  fi
  bin=$(bindir)
  if running "$bin" >/dev/null; then
    as_pg "$bin/pg_ctl" stop -D "$DIR" -m fast -w >&2
  else
    say "the cluster in $DIR is not running"
  fi
}

start() {
  install_postgres
  local bin port
  bin=$(bindir)
  command -v runuser >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || die "runuser is missing (package util-linux)"

  if port=$(running "$bin"); then
    say "already running in $DIR on 127.0.0.1:$port"
  else
    if [ ! -f "$DIR/PG_VERSION" ]; then
      if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR exists, is not empty and is not a PostgreSQL cluster"
      fi
      mkdir -p "$DIR"
      if [ "$(id -u)" = 0 ]; then
        chown postgres: "$DIR"
      fi
      chmod 700 "$DIR"
      as_pg test -w "$DIR" || die "the postgres user cannot write $DIR (is a parent folder closed to it?)"
      say "initialising a cluster in $DIR with $bin/initdb"
      as_pg "$bin/initdb" -D "$DIR" -U postgres --auth-host=trust --auth-local=trust \
        -E UTF8 --locale=C.UTF-8 >"$DIR.initdb.log" 2>&1 ||
        die "initdb failed: $(cat "$DIR.initdb.log")"
      rm -f "$DIR.initdb.log"
      # Loopback only, and only the user postgres.
      as_pg tee "$DIR/pg_hba.conf" >/dev/null <<'EOF'
# keyledger bench: the user postgres from loopback, without a password.
host    all     postgres        127.0.0.1/32    trust
EOF
      # Benchmark sizing. Durability stays PostgreSQL's default: fsync,
      # synchronous_commit and full_page_writes are on.
      as_pg tee -a "$DIR/postgresql.conf" >/dev/null <<'EOF'

# --- keyledger bench (scripts/postgres.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = 1GB
effective_cache_size = 4GB
maintenance_work_mem = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
random_page_cost = 1.1
logging_collector = off
EOF
    fi
    # The requested port, or the next free one.
    local want=$PORT
    for _ in $(seq 1 50); do
      port_busy "$PORT" || break
      PORT=$((PORT + 1))
    done
    port_busy "$PORT" && die "no free port from $want to $PORT"
    [ "$PORT" = "$want" ] || say "port $want is taken; using $PORT"
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    as_pg "$bin/pg_ctl" start -D "$DIR" -w -t 60 -l "$DIR/server.log" -o "-p $PORT" >&2 ||
      die "PostgreSQL did not start; see $DIR/server.log"
    port=$PORT
  fi
  wait_ready "$bin" "$port"
  ensure_db "$bin" "$port"
  echo "postgres://postgres@127.0.0.1:$port/$DB?sslmode=disable"
}

"$cmd"
