#!/usr/bin/env bash
# PostgreSQL for the integration tests (and for trying the team deployment on one machine).
#
#   scripts/ci_services.sh install            # Debian's postgresql via apt-get, if no server is found
#   scripts/ci_services.sh start DIR PORT     # a throw-away cluster in DIR on 127.0.0.1:PORT, db "mlflow"
#   scripts/ci_services.sh stop DIR           # stop it (DIR can then be deleted)
#   scripts/ci_services.sh bindir             # print the directory holding pg_ctl / initdb
#
# The cluster listens on loopback only, trusts local connections (user "netzip", no password) and
# keeps everything in DIR. PostgreSQL refuses to run as root: when run as root the server runs as
# the "postgres" system user (created by the Debian package) and DIR is handed to it.
set -euo pipefail

PG_USER=netzip
PG_DB=mlflow

bindir() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}

install() {
    if bindir >/dev/null; then
        echo "postgresql found in $(bindir)"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "postgresql is not installed and this is not root: run 'apt-get install postgresql' as root" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    # The package starts a system cluster on port 5432; the tests use their own, so stop it.
    service postgresql stop >/dev/null 2>&1 || true
    echo "postgresql installed in $(bindir)"
}

as_pg() {  # run a command as the user that owns the cluster
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=${1:?usage: start DIR PORT} port=${2:?usage: start DIR PORT} bin
    bin=$(bindir) || { echo "no postgresql server: run '$0 install' first" >&2; return 1; }
    mkdir -p "$dir"
    dir=$(readlink -f "$dir")
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir/data" -U "$PG_USER" --auth=trust -E UTF8 --no-locale >"$dir/initdb.log"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start >/dev/null
    if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" | grep -q 1; then
        as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$PG_USER" "$PG_DB"
    fi
    echo "postgresql://$PG_USER@127.0.0.1:$port/$PG_DB"
}

stop() {
    local dir=${1:?usage: stop DIR} bin
    bin=$(bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    install) install ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    bindir) bindir ;;
    *) echo "usage: $0 install | start DIR PORT | stop DIR | bindir" >&2; exit 2 ;;
esac
