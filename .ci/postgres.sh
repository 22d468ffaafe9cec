#!/usr/bin/env bash
# CI: make a throwaway PostgreSQL server available on 127.0.0.1 for the Postgres store tests.
#
# Idempotent: a second call finds the server it started and only prints the DSN again. Installs the
# `postgresql` package when no server binaries are present (Debian; needs root), initialises a data
# directory under /tmp owned by the `postgres` user with trust authentication, starts it with pg_ctl on
# 127.0.0.1 (default port 54329, or the next free one), and creates the database `loopengt_test`.
#
# stdout: the DSN, and only that, so `DSN=$(.ci/postgres.sh)` works. It is also written as
#   export LOOPENGT_TEST_POSTGRES=postgresql://postgres@127.0.0.1:54329/loopengt_test
# to .ci/postgres.env (or $LOOPENGT_PG_ENV_FILE), for `. .ci/postgres.env`.
#
# The server trades durability for speed (fsync off): it holds test data only. Stop it with
#   runuser -u postgres -- "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl" -D /tmp/loopengt-pg-54329 stop
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${LOOPENGT_PG_PORT:-54329}"
DATABASE="${LOOPENGT_PG_DATABASE:-loopengt_test}"
ENV_FILE="${LOOPENGT_PG_ENV_FILE:-.ci/postgres.env}"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# --- server binaries ----------------------------------------------------------------------------------
BIN="$(bin_dir)"
if [[ -z "$BIN" || ! -x "$BIN/initdb" || ! -x "$BIN/pg_ctl" ]]; then
    [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root: sudo $0"
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q postgresql >&2
    BIN="$(bin_dir)"
    [[ -n "$BIN" && -x "$BIN/initdb" ]] || die "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb"
fi
VERSION="$(basename "$(dirname "$BIN")")"

# Commands run as the `postgres` user when we are root (initdb refuses root), else as ourselves.
if [[ $EUID -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- data directory and server -----------------------------------------------------------------------
DATA="${LOOPENGT_PG_DATA:-/tmp/loopengt-pg-$PORT}"
running_port=""
if [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    running_port="$(sed -n 4p "$DATA/postmaster.pid")"  # line 4 of postmaster.pid is the port
fi

if [[ -n "$running_port" ]]; then
    PORT="$running_port"
    log "PostgreSQL $VERSION already running from $DATA on port $PORT"
else
    if [[ ! -f "$DATA/PG_VERSION" || "$(cat "$DATA/PG_VERSION" 2>/dev/null)" != "$VERSION" ]]; then
        log "initialising $DATA (PostgreSQL $VERSION)"
        rm -rf "$DATA"
        install -d -m 0700 -o "$OWNER" "$DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync >&2 \
            || as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale --no-sync >&2
    fi
    while port_busy "$PORT"; do
        log "port $PORT is taken, trying $((PORT + 1))"
        PORT=$((PORT + 1))
    done
    log "starting PostgreSQL $VERSION on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c max_connections=300 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 \
        || { tail -n 30 "$DATA/server.log" >&2 || true; die "the server did not start; its log is above"; }
fi

for _ in $(seq 1 60); do
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
"$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" >&2 || die "PostgreSQL on 127.0.0.1:$PORT is not accepting connections"

# --- database ----------------------------------------------------------------------------------------
psql_admin() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"; }
if [[ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]]; then
    log "creating database $DATABASE"
    psql_admin -c "CREATE DATABASE \"$DATABASE\""
fi

DSN="postgresql://postgres@127.0.0.1:$PORT/$DATABASE"
mkdir -p "$(dirname "$ENV_FILE")"
printf 'export LOOPENGT_TEST_POSTGRES=%s\n' "$DSN" >"$ENV_FILE"
log "ready; wrote $ENV_FILE"
echo "$DSN"
