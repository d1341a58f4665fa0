#!/usr/bin/env bash
# A local, throw-away PostgreSQL cluster for development and tests: the state replicas share
# (SIGNOFF_DATABASE_URL). No Docker: it runs Debian's PostgreSQL binaries
# (/usr/lib/postgresql/<version>/bin), installing the `postgresql` package with apt-get when they
# are missing (as root, or with passwordless sudo; otherwise it stops and prints the command).
#
# Usage: deploy/postgres.sh {up|down|status|url [SERVICE]|reset}
#
#   up      initdb on first run (user `signoff`, scram-sha-256, a random password), start the
#           server in the background on 127.0.0.1 only and wait until it accepts a login; then
#           one role and one schema per service (deploy/postgres-init.sh: signoff_deployer owns
#           the schema deployer and nothing else, no superuser), each with a password of its own
#   down    fast shutdown (pg_ctl stop -m fast)
#   status  exit 0 if the server is running and accepts connections
#   url     print the connection URL (SIGNOFF_DATABASE_URL). It names no password: it points at a
#           libpq password file (passfile=..., mode 600), so the secret stays out of the
#           environment, process listings and logs. Without SERVICE: the superuser's (tests);
#           with one of validator, policy, review_notifier, deployer, console: that service's
#           role, its schema as the search path (what `make up REPLICAS=N` gives each service)
#   reset   down, then delete the data dir
#
# Environment (defaults in brackets):
#   POSTGRES_DATA_DIR       cluster, password file, port and logs   [$REPO/.data/postgres]
#   POSTGRES_PORT           port on 127.0.0.1 [a free port chosen at first `up`, then kept]
#   POSTGRES_BIN_DIR        where initdb and pg_ctl are  [newest /usr/lib/postgresql/*/bin]
#   POSTGRES_START_TIMEOUT  seconds `up` waits for the server [60]
#
# Run as root, the server runs as the `postgres` user (PostgreSQL refuses to run as root): the
# data dir's parents must let that user through (mode o+x).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
DATA_DIR="${POSTGRES_DATA_DIR:-$REPO/.data/postgres}"
PGDATA="$DATA_DIR/cluster"
PASSFILE="$DATA_DIR/passfile"     # libpq password file: host:port:db:user:password, mode 600
PORT_FILE="$DATA_DIR/port"
LOG_FILE="$DATA_DIR/server.log"
START_TIMEOUT="${POSTGRES_START_TIMEOUT:-60}"
ROLES_DIR="$DATA_DIR/roles"       # each service role's password and libpq password file, mode 600
HOST=127.0.0.1
DB_USER=signoff
DB_NAME=signoff
SERVICES="validator policy review_notifier deployer console"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

bin_dir() {
  if [[ -n "${POSTGRES_BIN_DIR:-}" ]]; then
    echo "$POSTGRES_BIN_DIR"
    return
  fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Debian's package, when its binaries are not there yet.
ensure_binaries() {
  local dir
  dir="$(bin_dir)"
  [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && return 0
  local install="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql"
  if [[ "$(id -u)" == 0 ]]; then
    log "installing Debian's postgresql package (once)"
    bash -c "$install" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    log "installing Debian's postgresql package with sudo (once)"
    sudo -n bash -c "$install" >&2
  else
    die "PostgreSQL's binaries are not installed and this user cannot install them: run
  sudo bash -c '$install'
or set POSTGRES_BIN_DIR to a folder holding initdb and pg_ctl, or SIGNOFF_DATABASE_URL to a server you run"
  fi
  dir="$(bin_dir)"
  [[ -n "$dir" && -x "$dir/initdb" ]] || die "no initdb under /usr/lib/postgresql/*/bin after installing"
}

# Run a server binary as the data dir's owner: ourselves, or `postgres` when we are root.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port() {
  if [[ -n "${POSTGRES_PORT:-}" ]]; then
    echo "$POSTGRES_PORT"
  elif [[ -s "$PORT_FILE" ]]; then
    cat "$PORT_FILE"
  else
    free_port
  fi
}

password() {
  [[ -s "$PASSFILE" ]] || die "no password file $PASSFILE ('postgres.sh up' first)"
  sed -n 's/^[^:]*:[^:]*:[^:]*:[^:]*:\(.*\)$/\1/p' "$PASSFILE" | head -n 1
}

url() {
  echo "postgresql://$DB_USER@$HOST:$(port)/${1:-$DB_NAME}?passfile=$PASSFILE&connect_timeout=10"
}

# A service's URL: its own role and password file, its schema as the search path.
service_url() {
  local service="$1"
  [[ " $SERVICES " == *" $service "* ]] || die "no such service '$service' (one of: $SERVICES)"
  [[ -s "$ROLES_DIR/${service//_/-}.passfile" ]] || die "no role for $service yet ('postgres.sh up' first)"
  echo "postgresql://signoff_$service@$HOST:$(port)/$DB_NAME?passfile=$ROLES_DIR/${service//_/-}.passfile&connect_timeout=10&options=-csearch_path%3D$service"
}

# The services' roles and schemas (deploy/postgres-init.sh), each password made once.
cmd_roles() {
  local service name pw
  mkdir -p "$ROLES_DIR"
  chmod 700 "$ROLES_DIR"
  for service in $SERVICES; do
    name="${service//_/-}"
    if [[ ! -s "$ROLES_DIR/password-$name" ]]; then
      pw="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
      (umask 077; echo "$pw" >"$ROLES_DIR/password-$name"
       echo "$HOST:*:$DB_NAME:signoff_$service:$pw" >"$ROLES_DIR/$name.passfile")
    fi
  done
  local psql
  psql="$(bin_dir)/psql"
  [[ -x "$psql" ]] || psql=psql
  PSQL="$psql" PGHOST="$HOST" PGPORT="$(port)" PGUSER="$DB_USER" PGDATABASE="$DB_NAME" PGPASSFILE="$PASSFILE" \
    SIGNOFF_ROLE_PASSWORD_FILES="$ROLES_DIR/password-" sh "$SCRIPT_DIR/postgres-init.sh" \
    || die "could not make the services' roles (deploy/postgres-init.sh)"
}

pg_ctl_() { as_owner "$(bin_dir)/pg_ctl" -D "$PGDATA" "$@"; }

is_running() { [[ -f "$PGDATA/postmaster.pid" ]] && pg_ctl_ status >/dev/null 2>&1; }

# A real login as `signoff` with the password (not only an open port), to database $1.
accepts_login() {
  psql_ -X -q -w -d "$(url "${1:-$DB_NAME}")" -c 'SELECT 1' >/dev/null 2>&1
}

psql_() {
  local psql
  psql="$(bin_dir)/psql"
  [[ -x "$psql" ]] || psql=psql
  "$psql" "$@"
}

cmd_init() {
  local pw pwfile
  mkdir -p "$DATA_DIR"
  if [[ "$(id -u)" == 0 ]]; then
    chmod 711 "$DATA_DIR"  # the postgres user passes through to its cluster, reads nothing else
    runuser -u postgres -- test -x "$DATA_DIR" \
      || die "the postgres user cannot reach $DATA_DIR: its parents need o+x, or set POSTGRES_DATA_DIR elsewhere"
  fi
  echo "$(port)" >"$PORT_FILE"
  pw="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
  (umask 077; echo "$HOST:$(port):*:$DB_USER:$pw" >"$PASSFILE")
  # initdb reads the superuser's password from a file only the owner can read, removed after.
  pwfile="$(mktemp)"
  echo "$pw" >"$pwfile"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$PGDATA" "$pwfile"
  fi
  log "initdb in $PGDATA"
  if ! as_owner "$(bin_dir)/initdb" -D "$PGDATA" -U "$DB_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
      --encoding=UTF8 --no-locale >"$DATA_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    cat "$DATA_DIR/initdb.log" >&2
    die "initdb failed"
  fi
  rm -f "$pwfile"
  # Loopback only, password only: no `trust`, no peer login.
  cat >"$PGDATA/pg_hba.conf" <<EOF
# Written by deploy/postgres.sh: scram-sha-256 over TCP on loopback, nothing else.
host all all 127.0.0.1/32 scram-sha-256
EOF
  [[ "$(id -u)" != 0 ]] || chown postgres: "$PGDATA/pg_hba.conf"
}

cmd_up() {
  ensure_binaries
  [[ -s "$PGDATA/PG_VERSION" ]] || cmd_init
  if is_running; then
    log "already running on $HOST:$(port)"
  else
    : >"$LOG_FILE"
    [[ "$(id -u)" != 0 ]] || chown postgres: "$LOG_FILE"
    # No Unix socket (unix_socket_directories=''): only the TCP listener on 127.0.0.1.
    pg_ctl_ -l "$LOG_FILE" -w -t "$START_TIMEOUT" \
      -o "-c listen_addresses=$HOST -p $(port) -c unix_socket_directories='' -c max_connections=200" start >/dev/null \
      || { tail -n 30 "$LOG_FILE" >&2; die "the server did not start (log: $LOG_FILE)"; }
  fi
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until accepts_login postgres; do
    (( $(date +%s) < deadline )) || { tail -n 30 "$LOG_FILE" >&2; die "no login after ${START_TIMEOUT}s"; }
    sleep 0.2
  done
  if ! accepts_login; then
    psql_ -X -q -w -d "$(url postgres)" -c "CREATE DATABASE $DB_NAME" >/dev/null
  fi
  cmd_roles
  log "running on $HOST:$(port) (SIGNOFF_DATABASE_URL: deploy/postgres.sh url)"
}

cmd_down() {
  if is_running; then
    pg_ctl_ -m fast -w stop >/dev/null
    log "stopped"
  fi
}

cmd_status() {
  is_running && accepts_login
}

cmd_reset() {
  cmd_down
  rm -rf "$DATA_DIR"
}

case "${1:-}" in
  up)     cmd_up ;;
  down)   cmd_down ;;
  status) cmd_status ;;
  url)    if [[ -n "${2:-}" ]]; then service_url "$2"; else url; fi ;;
  reset)  cmd_reset ;;
  *)      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
